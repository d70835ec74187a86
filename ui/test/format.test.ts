import { describe, expect, it } from 'vitest';
import { formatBytes, formatDuration, formatPercent, formatRate, mediaTypeLabel, shortDigest, splitImage } from '../src/format';

describe('formatBytes', () => {
  it('uses IEC units with one decimal below 100', () => {
    expect(formatBytes(0)).toBe('0 B');
    expect(formatBytes(1023)).toBe('1023 B');
    expect(formatBytes(1024)).toBe('1.0 KiB');
    expect(formatBytes(1536)).toBe('1.5 KiB');
    expect(formatBytes(31457280)).toBe('30.0 MiB');
    expect(formatBytes(150 * 1024 * 1024)).toBe('150 MiB');
    expect(formatBytes(5 * 1024 ** 3)).toBe('5.0 GiB');
  });
  it('carries into the next unit instead of printing 1024', () => {
    expect(formatBytes(1024 * 1024 - 1)).toBe('1.0 MiB');
  });
  it('dashes unknown or nonsense values', () => {
    expect(formatBytes(null)).toBe('—');
    expect(formatBytes(undefined)).toBe('—');
    expect(formatBytes(-1)).toBe('—');
    expect(formatBytes(NaN)).toBe('—');
  });
});

describe('formatRate', () => {
  it('is bytes per second', () => {
    expect(formatRate(2097152)).toBe('2.0 MiB/s');
    expect(formatRate(0)).toBe('0 B/s');
    expect(formatRate(null)).toBe('—');
  });
});

describe('formatDuration', () => {
  it('is compact and zero-padded', () => {
    expect(formatDuration(0)).toBe('0s');
    expect(formatDuration(42.4)).toBe('42s');
    expect(formatDuration(59.6)).toBe('1m 00s');
    expect(formatDuration(185)).toBe('3m 05s');
    expect(formatDuration(3720)).toBe('1h 02m');
    expect(formatDuration(2 * 86400 + 3 * 3600)).toBe('2d 03h');
    expect(formatDuration(null)).toBe('—');
    expect(formatDuration(-3)).toBe('—');
  });
});

describe('formatPercent', () => {
  it('never rounds an unfinished value up to 100%', () => {
    expect(formatPercent(33.333)).toBe('33.3%');
    expect(formatPercent(99.99)).toBe('99.9%');
    expect(formatPercent(100)).toBe('100%');
    expect(formatPercent(120)).toBe('100%');
    expect(formatPercent(0)).toBe('0.0%');
    expect(formatPercent(null)).toBe('—');
  });
});

describe('names', () => {
  it('shortens digests without the algorithm prefix', () => {
    expect(shortDigest('sha256:0123456789abcdef0123')).toBe('0123456789ab');
    expect(shortDigest('0123456789abcdef')).toBe('0123456789ab');
    expect(shortDigest(null)).toBe('—');
  });
  it('labels media types', () => {
    expect(mediaTypeLabel('application/vnd.oci.image.layer.v1.tar+gzip')).toBe('oci layer tar+gzip');
    expect(mediaTypeLabel('application/vnd.oci.image.layer.v1.tar+zstd')).toBe('oci layer tar+zstd');
    expect(mediaTypeLabel('application/vnd.oci.image.layer.v1.tar')).toBe('oci layer tar');
    expect(mediaTypeLabel('application/vnd.docker.image.rootfs.diff.tar.gzip')).toBe('docker layer tar+gzip');
    expect(mediaTypeLabel('application/vnd.example.thing')).toBe('example.thing');
    expect(mediaTypeLabel(null)).toBe('—');
  });
  it('splits images without mistaking a registry port for a tag', () => {
    expect(splitImage('127.0.0.1:5001/demo/app')).toEqual({ repo: '127.0.0.1:5001/demo/app', tag: null, digest: false });
    expect(splitImage('127.0.0.1:5001/demo/app:1.2')).toEqual({ repo: '127.0.0.1:5001/demo/app', tag: '1.2', digest: false });
    expect(splitImage('docker.io/library/nginx@sha256:abc')).toEqual({ repo: 'docker.io/library/nginx', tag: 'sha256:abc', digest: true });
    expect(splitImage(null).repo).toBe('unknown image');
  });
});
