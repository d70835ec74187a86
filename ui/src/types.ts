// Shapes of the server's REST and SSE payloads (docs/api.md, schema v1).

export type PullState = 'pulling' | 'stalled' | 'completed' | 'failed' | 'lost';
export type LayerState = 'waiting' | 'downloading' | 'stalled' | 'done' | 'cached';
export type NodeState = 'ok' | 'lagging' | 'lost';

export interface Layer {
  digest: string;
  mediaType: string | null;
  state: LayerState;
  totalBytes: number;
  downloadedBytes: number;
  percent: number | null;
  startedAt: string | null;
  updatedAt: string | null;
}

/** A layer that moved in a report: `layerChanges` of pull.progress and pull.stalled (docs/api.md). */
export type LayerChange = Omit<Layer, 'digest' | 'mediaType'> & {
  /** its position in the pull's `layers` */
  index: number;
};

export interface PodRef {
  namespace: string;
  name: string;
  uid?: string;
  container?: string;
}

export interface PullError {
  reason: string;
  message: string;
}

/** A kubelet failure of this image on this node that a later retry got past. */
export interface ResolvedError extends PullError {
  failedAt: string | null;
  resolvedAt: string | null;
}

/** What kubelet's "Successfully pulled image ... in Xs" event said. */
export interface KubeletPulled {
  pulledAt: string | null;
  durationSeconds: number | null;
  waitingSeconds: number | null;
}

export interface Pull {
  id: string;
  node: string;
  image: string | null;
  manifestDigest: string | null;
  indexDigest: string | null;
  source: 'agent' | 'kubelet';
  state: PullState;
  error: PullError | null;
  /** Absent from servers older than this UI. */
  resolvedError?: ResolvedError | null;
  kubelet?: KubeletPulled | null;
  startedAt: string | null;
  completedAt: string | null;
  updatedAt: string | null;
  durationSeconds: number | null;
  totalKnown: boolean;
  totalBytes: number;
  downloadedBytes: number;
  percent: number | null;
  bytesPerSecond: number | null;
  etaSeconds: number | null;
  layersTotal: number;
  layersDone: number;
  pods: PodRef[];
  /** Present in snapshots, pull.started/completed/failed, pull.progress/stalled when a layer moved, and GET /api/v1/pulls/{id}. */
  layers?: Layer[];
}

export interface NodeInfo {
  name: string;
  state: NodeState;
  agentVersion: string | null;
  bootId: string | null;
  seq: number;
  restarts: number;
  firstReportAt: string | null;
  lastReportAt: string | null;
  reportIntervalSeconds: number | null;
  pullsActive: number;
  pullsTotal: number;
  /** absent from servers before it */
  containerd?: ContainerdStatus;
}

/** Whether the node's agent reaches containerd: while not, since its first failed poll and
 * gRPC's error of the last one (the node's pulls are then frozen at their last state). */
export interface ContainerdStatus {
  reachable: boolean;
  since: string | null;
  error: string | null;
}

export interface Alert {
  name: string;
  severity: string;
  summary: string;
  description?: string;
  labels?: Record<string, string>;
  pullId?: string | null;
  node?: string | null;
}

/** One event as read from the stream: `id:`, `event:` and parsed `data:`. */
export interface StreamEvent {
  id: number | null;
  type: string;
  data: any;
}

/** The server's sum of one image's pulls across the nodes (`rollout.summary`, docs/api.md). */
export interface Rollout {
  image: string;
  nodes: number;
  done: number;
  pulling: number;
  stalled: number;
  failed: number;
  waiting: number;
  totalBytes: number;
  downloadedBytes: number;
  bytesPerSecond: number;
  etaSeconds: number | null;
  startedAt: string | null;
  updatedAt: string | null;
}
