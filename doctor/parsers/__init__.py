"""Bytes in, data out: the formats the doctor reads (dmidecode, SPD, ELF, GGUF, llama-server
--help, procfs). No host, no I/O.
"""
