"""The config file under --root is read inside the tree, its symlinks too."""

from __future__ import annotations

from q3cn_doctor.app import config


def test_a_root_trees_config_is_read_inside_it(tmp_path):
    root = tmp_path / "root"
    (root / "etc" / "q3cn-doctor").mkdir(parents=True)
    (root / "etc" / "q3cn-doctor" / "config.toml").write_text('profile = "gpt-oss-120b-mxfp4"\n')
    settings, used = config.load(None, None, str(root))
    assert settings["profile"] == "gpt-oss-120b-mxfp4"
    assert used[0] == str(root / "etc" / "q3cn-doctor" / "config.toml")


def test_an_absolute_symlink_in_the_tree_does_not_lead_out_of_it(tmp_path):
    outside = tmp_path / "outside.toml"
    outside.write_text('profile = "from-outside-the-tree"\n')
    root = tmp_path / "root"
    (root / "etc" / "q3cn-doctor").mkdir(parents=True)
    (root / "etc" / "q3cn-doctor" / "config.toml").symlink_to(outside)  # absolute target
    settings, used = config.load(None, None, str(root))
    assert "profile" not in settings and str(outside) not in used
    inside = root / str(outside).lstrip("/")
    inside.parent.mkdir(parents=True)
    inside.write_text('profile = "qwen3-coder-next-mxfp4"\n')  # the link, followed in the tree
    assert config.load(None, None, str(root))[0]["profile"] == "qwen3-coder-next-mxfp4"
