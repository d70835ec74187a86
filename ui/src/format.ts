// Human units for bytes, rates, durations and percentages, and short names for digests,
// media types and images. Every function accepts null/undefined and returns a dash.

export const DASH = '—';

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

/** 1536 -> "1.5 KiB"; IEC units, one decimal below 100, none above. */
export function formatBytes(n: number | null | undefined): string {
  if (n == null || !Number.isFinite(n) || n < 0) return DASH;
  if (n < 1024) return `${Math.round(n)} B`;
  let v = n;
  let u = 0;
  while (v >= 1024 && u < UNITS.length - 1) {
    v /= 1024;
    u++;
  }
  // 1023.96 KiB would print as "1024 KiB": carry into the next unit.
  if (v >= 1023.95 && u < UNITS.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v < 100 ? v.toFixed(1) : Math.round(v).toString()} ${UNITS[u]}`;
}

export function formatRate(bps: number | null | undefined): string {
  if (bps == null || !Number.isFinite(bps) || bps < 0) return DASH;
  return `${formatBytes(bps)}/s`;
}

/** Seconds -> "42s", "3m 05s", "1h 02m", "2d 03h". */
export function formatDuration(s: number | null | undefined): string {
  if (s == null || !Number.isFinite(s) || s < 0) return DASH;
  const t = Math.round(s);
  const pad = (x: number) => x.toString().padStart(2, '0');
  if (t < 60) return `${t}s`;
  if (t < 3600) return `${Math.floor(t / 60)}m ${pad(t % 60)}s`;
  if (t < 86400) return `${Math.floor(t / 3600)}h ${pad(Math.floor((t % 3600) / 60))}m`;
  return `${Math.floor(t / 86400)}d ${pad(Math.floor((t % 86400) / 3600))}h`;
}

/** 33.333 -> "33.3%"; never shows 100% for an unfinished value. */
export function formatPercent(p: number | null | undefined): string {
  if (p == null || !Number.isFinite(p)) return DASH;
  const c = Math.min(100, Math.max(0, p));
  if (c >= 100) return '100%';
  const s = c.toFixed(1);
  return `${s === '100.0' ? '99.9' : s}%`;
}

/** "sha256:abcdef0123456789..." -> "abcdef012345" (no algorithm prefix, 12 hex). */
export function shortDigest(d: string | null | undefined, len = 12): string {
  if (!d) return DASH;
  const i = d.indexOf(':');
  return (i >= 0 ? d.slice(i + 1) : d).slice(0, len);
}

/** "application/vnd.oci.image.layer.v1.tar+gzip" -> "oci layer tar+gzip". */
export function mediaTypeLabel(mt: string | null | undefined): string {
  if (!mt) return DASH;
  const known: [RegExp, string][] = [
    [/^application\/vnd\.oci\.image\.layer\.v1\.tar(\+(\w+))?$/, 'oci layer tar'],
    [/^application\/vnd\.oci\.image\.layer\.nondistributable\.v1\.tar(\+(\w+))?$/, 'oci foreign layer tar'],
    [/^application\/vnd\.docker\.image\.rootfs\.diff\.tar(\.(\w+))?$/, 'docker layer tar'],
    [/^application\/vnd\.docker\.image\.rootfs\.foreign\.diff\.tar(\.(\w+))?$/, 'docker foreign layer tar'],
  ];
  for (const [re, label] of known) {
    const m = re.exec(mt);
    if (m) return m[2] ? `${label}+${m[2]}` : label;
  }
  return mt.replace(/^application\/vnd\./, '');
}

export interface ImageName {
  repo: string;
  tag: string | null; // ":tag" or "@sha256:..." part, without the separator
  digest: boolean;
}

/** Splits "127.0.0.1:5001/demo/app:1.2" into repo and tag (a registry port is not a tag). */
export function splitImage(image: string | null | undefined): ImageName {
  if (!image) return { repo: 'unknown image', tag: null, digest: false };
  const at = image.indexOf('@');
  if (at >= 0) return { repo: image.slice(0, at), tag: image.slice(at + 1), digest: true };
  const slash = image.lastIndexOf('/');
  const colon = image.lastIndexOf(':');
  if (colon > slash) return { repo: image.slice(0, colon), tag: image.slice(colon + 1), digest: false };
  return { repo: image, tag: null, digest: false };
}

export function formatTime(iso: string | null | undefined): string {
  if (!iso) return DASH;
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return DASH;
  return d.toLocaleTimeString(undefined, { hour12: false });
}
