"""A private certificate authority for the tests, made with `openssl` at test time: a CA and
the server certificates it issues (for 127.0.0.1 and localhost), as cert-manager would put
them in a Secret (tls.crt, tls.key, ca.crt)."""

import subprocess
from pathlib import Path


class CA:
    """A CA in `directory` (created); `cert` is its PEM certificate (what agents trust)."""

    def __init__(self, directory, name="pulltrace-e2e-ca"):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.key = self.dir / "ca.key"
        self.cert = self.dir / "ca.crt"
        self.serial = 0
        self._openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", self.key,
                      "-out", self.cert, "-days", "2", "-subj", f"/CN={name}")

    def _openssl(self, *args):
        with open(self.dir / "openssl.log", "ab") as log:
            subprocess.run(["openssl", *map(str, args)], check=True, stdout=log, stderr=log,
                           cwd=self.dir)

    def issue(self, name="pulltrace", hosts=("IP:127.0.0.1", "DNS:localhost")):
        """A new key and a certificate for `hosts` signed by this CA: (cert path, key path),
        files of their own for every call (a rotation issues a new pair)."""
        self.serial += 1
        stem = self.dir / f"{name}-{self.serial}"
        ext = stem.with_suffix(".ext")
        ext.write_text(f"subjectAltName={','.join(hosts)}\nextendedKeyUsage=serverAuth\n")
        key, csr, cert = stem.with_suffix(".key"), stem.with_suffix(".csr"), stem.with_suffix(".crt")
        self._openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
                      "-subj", f"/CN={name}")
        self._openssl("x509", "-req", "-in", csr, "-CA", self.cert, "-CAkey", self.key,
                      "-set_serial", str(1000 + self.serial), "-out", cert, "-days", "2",
                      "-extfile", ext)
        return cert, key
