"""Test images made without Docker: random files -> tar -> `gzip -1` layers, a hand-written
OCI config and manifest (and optionally an image index), laid out as an OCI layout directory
and pushed with skopeo.

Layers are objects of their own, so one layer can go into several images (a layer shared with
an image pulled before shows as cached). Everything returned carries the digests and sizes the
tests assert on.
"""

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from .proc import HarnessError

SKOPEO = "/usr/bin/skopeo"

MT_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_IN_TOTO = "application/vnd.in-toto+json"

CHUNK = 1 << 20


def sha256_bytes(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


@dataclass
class Layer:
    """A gzip-compressed tar layer. `size` is the compressed blob size (what a pull
    downloads and what the manifest lists); `content_bytes` the random payload in it."""
    digest: str
    size: int
    diff_id: str
    path: Path
    content_bytes: int
    media_type: str = MT_LAYER

    def descriptor(self):
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}

    @property
    def hex(self):
        return self.digest.split(":", 1)[1]


@dataclass
class Manifest:
    """One platform's image manifest with its config and layers."""
    digest: str
    size: int
    data: bytes
    config_digest: str
    config_size: int
    config_data: bytes
    layers: list
    os: str = "linux"
    architecture: str = "amd64"
    variant: str = None
    media_type: str = MT_MANIFEST
    annotations: dict = None           # on its descriptor in an index

    @property
    def total_bytes(self):
        """Sum of the layer sizes: what a pull's `totalBytes` must be."""
        return sum(layer.size for layer in self.layers)

    @property
    def layer_digests(self):
        return [layer.digest for layer in self.layers]

    def descriptor(self, with_platform=False):
        d = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if with_platform:
            d["platform"] = {"architecture": self.architecture, "os": self.os}
            if self.variant:
                d["platform"]["variant"] = self.variant
            if self.annotations:
                d["annotations"] = dict(self.annotations)
        return d


@dataclass
class Image:
    """A pushed image: a single manifest, or an index over several platform manifests."""
    name: str
    tag: str
    registry: str                      # host:port it was pushed to
    manifests: list                    # [Manifest]; one for a plain image
    index_digest: str = None
    index_size: int = None
    index_data: bytes = None
    oci_dir: Path = None
    extra: dict = field(default_factory=dict)

    @property
    def is_index(self):
        return self.index_digest is not None

    @property
    def manifest(self):
        """The manifest a linux/amd64 node pulls (the only one for a plain image)."""
        return self.for_arch("amd64") if self.is_index else self.manifests[0]

    def for_arch(self, arch):
        for m in self.manifests:
            if m.architecture == arch:
                return m
        raise KeyError(f"{self.name}:{self.tag} has no {arch} manifest")

    @property
    def manifest_digest(self):
        return self.manifest.digest

    @property
    def layers(self):
        return self.manifest.layers

    @property
    def total_bytes(self):
        return self.manifest.total_bytes

    @property
    def top_digest(self):
        """What the tag points at: the index digest, or the manifest digest."""
        return self.index_digest or self.manifest.digest

    def ref(self, host=None):
        """`host/name:tag`; pass the nginx host to pull through the throttle."""
        return f"{host or self.registry}/{self.name}:{self.tag}"

    def image_ref(self, host=None):
        """`host/name` without the tag: the agent's `imageRef` when pulled from `host`."""
        return f"{host or self.registry}/{self.name}"


class ImageBuilder:
    """Builds layers and images in `workdir` and pushes them to the registry at `registry`
    ("127.0.0.1:5000", plain HTTP)."""

    def __init__(self, workdir, registry):
        self.dir = Path(workdir)
        self.registry = registry
        self.blobs = self.dir / "blobs" / "sha256"
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.tmp = self.dir / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.policy = self.dir / "policy.json"
        self.policy.write_text(json.dumps(
            {"default": [{"type": "insecureAcceptAnything"}]}))
        self.log_path = self.dir / "skopeo.log"
        self._counter = 0

    # -- blobs ---------------------------------------------------------------------------
    def _store(self, data):
        digest = sha256_bytes(data)
        path = self.blobs / digest.split(":", 1)[1]
        if not path.exists():
            path.write_bytes(data)
        return digest, len(data), path

    def layer(self, size, files=1):
        """A new layer of `size` bytes of random content in `files` files (tar + gzip -1).

        Random data does not compress, so the blob is `size` plus a little tar/gzip overhead;
        `Layer.size` is the exact blob size.
        """
        self._counter += 1
        n = self._counter
        files = max(1, int(files))
        tar_path = self.tmp / f"layer-{n}.tar"
        with tarfile.open(tar_path, "w", format=tarfile.PAX_FORMAT) as tar:
            d = tarfile.TarInfo(f"pt-{n}")
            d.type, d.mode, d.mtime = tarfile.DIRTYPE, 0o755, 0
            tar.addfile(d)
            left = int(size)
            for i in range(files):
                part = left // (files - i)
                left -= part
                info = tarfile.TarInfo(f"pt-{n}/data-{i}.bin")
                info.size, info.mode, info.mtime = part, 0o644, 0
                tar.addfile(info, _RandomReader(part))
        diff_id = sha256_file(tar_path)
        gz_path = self.tmp / f"layer-{n}.tar.gz"
        with open(gz_path, "wb") as out:
            r = subprocess.run(["gzip", "-1", "-n", "-c", str(tar_path)], stdout=out,
                               stderr=subprocess.PIPE)
        if r.returncode != 0:
            raise HarnessError(f"gzip failed: {r.stderr.decode()}")
        tar_path.unlink()
        digest = sha256_file(gz_path)
        blob = self.blobs / digest.split(":", 1)[1]
        os.replace(gz_path, blob)
        return Layer(digest=digest, size=blob.stat().st_size, diff_id=diff_id, path=blob,
                     content_bytes=int(size))

    def manifest(self, layers, architecture="amd64", variant=None, os_name="linux",
                 labels=None):
        """Writes the config and manifest blobs for `layers` (Layer objects or sizes)."""
        layers = [lay if isinstance(lay, Layer) else self.layer(lay) for lay in layers]
        self._counter += 1
        config = {
            "created": "2024-01-01T00:00:00Z",
            "architecture": architecture,
            "os": os_name,
            "config": {"Env": ["PATH=/usr/bin:/bin"], "Cmd": ["/bin/true"],
                       "Labels": dict(labels or {}, **{"pulltrace.test/n": str(self._counter)})},
            "rootfs": {"type": "layers", "diff_ids": [lay.diff_id for lay in layers]},
            "history": [{"created": "2024-01-01T00:00:00Z",
                         "created_by": f"pulltrace e2e layer {i}"} for i in range(len(layers))],
        }
        if variant:
            config["variant"] = variant
        config_data = json.dumps(config, sort_keys=True).encode()
        config_digest, config_size, _ = self._store(config_data)
        manifest = {
            "schemaVersion": 2,
            "mediaType": MT_MANIFEST,
            "config": {"mediaType": MT_CONFIG, "digest": config_digest, "size": config_size},
            "layers": [lay.descriptor() for lay in layers],
        }
        data = json.dumps(manifest, sort_keys=True).encode()
        digest, size, _ = self._store(data)
        return Manifest(digest=digest, size=size, data=data, config_digest=config_digest,
                        config_size=config_size, config_data=config_data, layers=layers,
                        os=os_name, architecture=architecture, variant=variant)

    # -- images --------------------------------------------------------------------------
    def image(self, name, tag="latest", layers=(1 << 20,), architecture="amd64", push=True):
        """A single-manifest image from `layers` (Layer objects, or sizes for new layers)."""
        m = self.manifest(layers, architecture=architecture)
        img = Image(name=name, tag=tag, registry=self.registry, manifests=[m])
        self._layout(img, m.descriptor(), [m])
        if push:
            self.push(img)
        return img

    def attestation(self, subject, statement_bytes=4096):
        """An attestation manifest for the platform manifest `subject`, as BuildKit adds to
        an index: platform unknown/unknown, an in-toto statement as its one layer, and the
        annotations that name the subject."""
        statement = json.dumps({
            "_type": "https://in-toto.io/Statement/v0.1",
            "predicateType": "https://slsa.dev/provenance/v0.2",
            "subject": [{"name": "pulltrace-e2e", "digest": {"sha256": subject.digest[7:]}}],
            "predicate": {"padding": os.urandom(statement_bytes // 2).hex()},
        }, sort_keys=True).encode()
        digest, size, path = self._store(statement)
        layer = Layer(digest=digest, size=size, diff_id=digest, path=path,
                      content_bytes=size, media_type=MT_IN_TOTO)
        config_data = json.dumps({"architecture": "unknown", "os": "unknown", "config": {},
                                  "rootfs": {"type": "layers", "diff_ids": [digest]}},
                                 sort_keys=True).encode()
        config_digest, config_size, _ = self._store(config_data)
        data = json.dumps({
            "schemaVersion": 2, "mediaType": MT_MANIFEST,
            "config": {"mediaType": MT_CONFIG, "digest": config_digest, "size": config_size},
            "layers": [dict(layer.descriptor(), annotations={
                "in-toto.io/predicate-type": "https://slsa.dev/provenance/v0.2"})],
        }, sort_keys=True).encode()
        m_digest, m_size, _ = self._store(data)
        return Manifest(digest=m_digest, size=m_size, data=data, config_digest=config_digest,
                        config_size=config_size, config_data=config_data, layers=[layer],
                        os="unknown", architecture="unknown",
                        annotations={"vnd.docker.reference.digest": subject.digest,
                                     "vnd.docker.reference.type": "attestation-manifest"})

    def index(self, name, tag="latest", platforms=None, push=True, attestations=False,
              statement_bytes=4096):
        """A multi-arch image: an OCI index over one manifest per platform.

        platforms: {"amd64": [layers or sizes], "arm64": [...]} (default: two small layers
        each); "arm64" gets variant v8. attestations: each platform manifest also gets an
        attestation manifest in the index (see `attestation`), as images built by BuildKit
        have (with statements of about `statement_bytes`); `Image.manifests` lists them with
        architecture "unknown".
        """
        platforms = platforms or {"amd64": [1 << 20, 256 << 10], "arm64": [1 << 20, 256 << 10]}
        manifests = [self.manifest(lays, architecture=arch,
                                   variant="v8" if arch == "arm64" else None)
                     for arch, lays in platforms.items()]
        if attestations:
            manifests += [self.attestation(m, statement_bytes) for m in list(manifests)]
        index = {"schemaVersion": 2, "mediaType": MT_INDEX,
                 "manifests": [m.descriptor(with_platform=True) for m in manifests]}
        data = json.dumps(index, sort_keys=True).encode()
        digest, size, _ = self._store(data)
        img = Image(name=name, tag=tag, registry=self.registry, manifests=manifests,
                    index_digest=digest, index_size=size, index_data=data)
        self._layout(img, {"mediaType": MT_INDEX, "digest": digest, "size": size}, manifests)
        if push:
            self.push(img)
        return img

    def _layout(self, img, top, manifests):
        safe = img.name.replace("/", "_") + "-" + img.tag
        d = self.dir / "oci" / safe
        if d.exists():
            shutil.rmtree(d)
        blobs = d / "blobs" / "sha256"
        blobs.mkdir(parents=True)
        (d / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
        top = dict(top, annotations={"org.opencontainers.image.ref.name": img.tag})
        (d / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [top]}))
        wanted = {top["digest"]}
        for m in manifests:
            wanted |= {m.digest, m.config_digest, *m.layer_digests}
        for digest in wanted:
            hexd = digest.split(":", 1)[1]
            os.link(self.blobs / hexd, blobs / hexd)
        img.oci_dir = d

    def push(self, img):
        """skopeo copy oci:DIR:TAG docker://REGISTRY/NAME:TAG, then checks the registry
        serves the very digest we computed (skopeo must not rewrite anything)."""
        argv = [SKOPEO, "copy", "--quiet", "--dest-tls-verify=false", "--preserve-digests",
                "--policy", str(self.policy)]
        if img.is_index:
            argv.append("--all")
        argv += [f"oci:{img.oci_dir}:{img.tag}", f"docker://{self.registry}/{img.name}:{img.tag}"]
        env = dict(os.environ, TMPDIR=str(self.tmp), HOME=str(self.dir))
        env = {k: v for k, v in env.items() if "proxy" not in k.lower()}
        r = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
        with open(self.log_path, "a") as log:
            log.write(f"$ {' '.join(argv)}\n{r.stdout}{r.stderr}[exit {r.returncode}]\n")
        if r.returncode != 0:
            raise HarnessError(f"skopeo push of {img.name}:{img.tag} failed: {r.stderr}")
        import requests
        accept = MT_INDEX if img.is_index else MT_MANIFEST
        resp = requests.get(f"http://{self.registry}/v2/{img.name}/manifests/{img.tag}",
                            headers={"Accept": accept}, timeout=10)
        got = resp.headers.get("Docker-Content-Digest")
        if resp.status_code != 200 or got != img.top_digest:
            raise HarnessError(f"registry serves {img.name}:{img.tag} as {got} "
                               f"(HTTP {resp.status_code}), expected {img.top_digest}")
        return img


class _RandomReader(io.RawIOBase):
    """A file-like object of `n` random bytes, read in chunks (no big buffer in memory)."""

    def __init__(self, n):
        self.left = n

    def readable(self):
        return True

    def read(self, size=-1):
        if self.left <= 0:
            return b""
        if size is None or size < 0 or size > self.left:
            size = self.left
        size = min(size, CHUNK)
        self.left -= size
        return os.urandom(size)
