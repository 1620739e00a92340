"""Where people keep GGUF files, and the profile's model among them.

A measurement needs a real file. Without ``--model`` (or the config file's ``model``)
the profile's file is looked for where llama.cpp and Hugging Face put downloads and
where people keep their own: the Hugging Face hub cache (``$HF_HUB_CACHE``, else
``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``: ``models--ORG--NAME/snapshots/REV/``),
llama.cpp's ``-hf`` cache (``$LLAMA_CACHE``, else ``~/.cache/llama.cpp``) and ``~/models``
(two folders deep). A split model is found by its first part.
"""

from __future__ import annotations

import re

from msgspec import Struct, field
from q3cn_doctor.host.base import Host
from q3cn_doctor.profiles import PROFILES

_SPLIT_PART = re.compile(r"-(\d{5})-of-\d{5}\.gguf$", re.IGNORECASE)
# How each profile's GGUF is named where people download it: words every name carries,
# and the quantisation preferred among several (unsloth's and ggml-org's
# Qwen3-Coder-Next-MXFP4_MOE.gguf, ggml-org's gpt-oss-120b-mxfp4-00001-of-00003.gguf).
PROFILE_FILES = {
    "qwen3-coder-next-mxfp4": (("qwen3-coder-next",), "mxfp4"),
    "gpt-oss-120b-mxfp4": (("gpt-oss-120b",), "mxfp4"),
}


class ModelSearch(Struct):
    """Where the profile's model file was looked for, and what was found."""
    path: str | None  # the file found, None where none matched
    looked: list[str] = field(default_factory=list)  # the folders searched
    candidates: list[str] = field(default_factory=list)  # every matching file, best first

    def reason(self, profile: str) -> str:
        name = PROFILES[profile]["name"]
        return (f"no GGUF of {name} found in {', '.join(self.looked)}: give --model PATH "
                "(or model = \"PATH\" in the config file)")


def search_folders(host: Host, homes: list[str]) -> list[tuple[str, list[str]]]:
    """(folder, glob patterns under it) for each place GGUFs are kept, in search order."""
    env = host.environ()
    places: list[tuple[str, list[str]]] = []
    hub = env.get("HF_HUB_CACHE") or (env["HF_HOME"].rstrip("/") + "/hub"
                                      if env.get("HF_HOME") else None)
    llama = env.get("LLAMA_CACHE")
    for home in homes:
        home = home.rstrip("/")
        places.append((hub or f"{home}/.cache/huggingface/hub",
                       ["models--*/snapshots/*/*.gguf", "models--*/snapshots/*/*/*.gguf"]))
        places.append((llama or f"{home}/.cache/llama.cpp", ["*.gguf", "*/*.gguf"]))
        places.append((f"{home}/models", ["*.gguf", "*/*.gguf", "*/*/*.gguf"]))
    seen: set[str] = set()
    unique = []
    for folder, patterns in places:
        if folder not in seen:
            seen.add(folder)
            unique.append((folder, patterns))
    return unique


def find_profile_model(host: Host, profile: str, homes: list[str]) -> ModelSearch:
    """The profile's GGUF in the usual places: a name carrying the profile's words, the
    profile's quantisation first, the first part of a split file."""
    words, quant = PROFILE_FILES[profile]
    search = ModelSearch(None)
    found: list[str] = []
    for folder, patterns in search_folders(host, homes):
        search.looked.append(folder)
        if not host.is_dir(folder):
            continue
        for pattern in patterns:
            found += host.glob(f"{folder}/{pattern}")
    for path in found:
        name = path.rsplit("/", 1)[-1].lower()
        part = _SPLIT_PART.search(name)
        if all(word in name for word in words) and (part is None or part.group(1) == "00001"):
            search.candidates.append(path)
    search.candidates.sort(key=lambda p: (quant not in p.rsplit("/", 1)[-1].lower(), p))
    search.path = search.candidates[0] if search.candidates else None
    return search


def _words(text: str) -> str:
    return "-".join(text.lower().replace("_", " ").replace(".", " ").replace("-", " ").split())


def profile_of(architecture: str, *names: str | None) -> str | None:
    """The profile a real model file is an instance of: the same architecture, and the
    profile's file words (``qwen3-coder-next``, ``gpt-oss-120b``) in its general.name or
    its file name. None for any other model: one model's settings never go to another."""
    for key, (words, _) in PROFILE_FILES.items():
        if PROFILES[key]["architecture"] != architecture:
            continue
        if any(all(_words(word) in _words(name) for word in words) for name in names if name):
            return key
    return None
