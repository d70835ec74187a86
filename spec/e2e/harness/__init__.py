"""Pulltrace's end-to-end harness: real containerd, docker-registry, nginx, skopeo-pushed
images and a report receiver, each started privately on 127.0.0.1 and stopped by PID.

Python stdlib + requests only (Debian's /usr/bin/python3). See docs/development.md.
"""

from .containerd import Containerd
from .cri import Cri, CriPull, build_dir, cri_pull_binary
from .daemon import Daemon, find_binary, run_binary
from .images import Image, ImageBuilder, Layer, Manifest
from .proc import HarnessError, Proc, free_port, wait_until
from .receiver import ReportReceiver, find_pull, summarize
from .registry import Nginx, Registry
from .stack import Stack

__all__ = [
    "Containerd", "Cri", "CriPull", "build_dir", "cri_pull_binary", "Daemon", "find_binary",
    "run_binary", "Image", "ImageBuilder", "Layer", "Manifest", "HarnessError", "Proc",
    "free_port", "wait_until", "ReportReceiver", "find_pull", "summarize", "Nginx",
    "Registry", "Stack",
]
