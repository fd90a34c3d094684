"""What runs inside a sandbox: which Python, with which environment, reading code from stdin.

The runtime is the host's Debian Python (``/usr/bin/python3`` with numpy, pandas and matplotlib
from Debian packages), bound read-only. Nothing from the server's environment is passed on: the
environment below is the whole of it.
"""

from __future__ import annotations

PYTHON = "/usr/bin/python3"
# -I: no PYTHON* variables, no user site-packages, no script directory on sys.path.
# "-": the program is read from stdin, so the code never touches a disk.
ARGV = (PYTHON, "-I", "-")
WORKDIR = "/workspace"
INPUT_DIR = "/input"
OUTPUT_DIR = "/output"
ENV = (
    "PATH=/usr/bin:/bin",
    "HOME=/workspace",
    "LANG=C.UTF-8",
    "MPLBACKEND=Agg",
    "MPLCONFIGDIR=/tmp",
    # One thread per BLAS/OpenMP pool: threads count against the pids limit.
    "OPENBLAS_NUM_THREADS=1",
    "OMP_NUM_THREADS=1",
    "MKL_NUM_THREADS=1",
    "TZ=UTC",
)
# The minimal /etc inside: enough for getpwuid() and "localhost".
ETC_FILES = {
    "passwd": "root:x:0:0:root:/root:/usr/sbin/nologin\n"
    "nobody:x:65534:65534:nobody:/workspace:/usr/sbin/nologin\n",
    "group": "root:x:0:\nnogroup:x:65534:\n",
    "hosts": "127.0.0.1 localhost\n::1 localhost\n",
}
# From the host's /etc, and nothing else of it: the dynamic linker's cache and matplotlib's
# system config (copied when a runner starts), Debian's alternatives (libblas.so.3 resolves
# through /etc/alternatives; links only) and fontconfig's configuration (bound read-only).
ETC_COPIED = ("ld.so.cache", "matplotlibrc")
ETC_BOUND = ("alternatives", "fonts")
