"""Pulltrace's end-to-end harness: real containerd, docker-registry, nginx, skopeo-pushed
images, a report receiver and pulltrace-server (with its event-stream reader and the agent
report builder), each started privately on 127.0.0.1 and stopped by PID.

Python stdlib + requests only (Debian's /usr/bin/python3). See docs/development.md.
"""

from . import reports
from .containerd import Containerd
from .cri import Cri, CriPull, build_dir, cri_pull_binary
from .daemon import Daemon, find_binary, run_binary
from .events import EventStream
from .images import Image, ImageBuilder, Layer, Manifest
from .proc import HarnessError, Proc, cpu_seconds, free_port, wait_until
from .receiver import ReportReceiver, find_pull, summarize
from .registry import Nginx, Registry
from .server import Metrics, Server
from .stack import Stack

__all__ = [
    "reports", "Containerd", "Cri", "CriPull", "build_dir", "cri_pull_binary", "Daemon",
    "find_binary", "run_binary", "EventStream", "Image", "ImageBuilder", "Layer", "Manifest",
    "HarnessError", "Proc", "cpu_seconds", "free_port", "wait_until", "ReportReceiver",
    "find_pull", "summarize", "Nginx", "Registry", "Metrics", "Server", "Stack",
]
