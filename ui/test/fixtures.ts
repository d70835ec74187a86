import type { Layer, Pull } from '../src/types';

export function layer(over: Partial<Layer> = {}): Layer {
  return {
    digest: 'sha256:' + 'a'.repeat(64),
    mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
    state: 'waiting',
    totalBytes: 1000,
    downloadedBytes: 0,
    percent: 0,
    startedAt: null,
    updatedAt: null,
    ...over,
  };
}

export function pull(over: Partial<Pull> = {}): Pull {
  return {
    id: 'node-a/2f1c0a5e6b7d8c9e-1763719200',
    node: 'node-a',
    image: '127.0.0.1/demo/app:1.0',
    manifestDigest: 'sha256:' + '2f'.repeat(32),
    indexDigest: null,
    source: 'agent',
    state: 'pulling',
    error: null,
    startedAt: '2026-11-21T10:00:00.000Z',
    completedAt: null,
    updatedAt: '2026-11-21T10:00:05.000Z',
    durationSeconds: 5,
    totalKnown: true,
    totalBytes: 3000,
    downloadedBytes: 1000,
    percent: 33.33,
    bytesPerSecond: 200,
    etaSeconds: 10,
    layersTotal: 3,
    layersDone: 1,
    pods: [],
    ...over,
  };
}
