import { memo } from 'react';
import { formatDuration, formatRate } from '../format';
import type { ConnInfo } from '../stream';
import type { Summary } from '../view';

const LABEL: Record<ConnInfo['state'], string> = {
  connecting: 'Connecting…',
  live: 'Live',
  reconnecting: 'Reconnecting…',
  offline: 'Offline',
};

export function ConnBadge({ conn, now }: { conn: ConnInfo; now: number }) {
  let detail = '';
  if (conn.state === 'reconnecting' || conn.state === 'offline') {
    const wait = conn.nextAttemptAt != null ? Math.max(0, (conn.nextAttemptAt - now) / 1000) : null;
    detail = `${conn.error ?? 'connection lost'} · ${formatDuration(Math.max(0, now - conn.since) / 1000)} ago${
      wait != null && wait >= 1 ? ` · retry in ${formatDuration(wait)}` : ''
    }`;
  } else if (conn.state === 'live') {
    detail = `connected for ${formatDuration(Math.max(0, now - conn.since) / 1000)}`;
  }
  return (
    <div className={`conn conn-${conn.state}`} data-state={conn.state} role="status" aria-live="polite" title={detail}>
      <span className="dot" aria-hidden="true" />
      <span className="conn-label">{LABEL[conn.state]}</span>
      <span className="sr-only"> {detail}</span>
    </div>
  );
}

function Stat({ label, value, tone, testid }: { label: string; value: string | number; tone?: string; testid: string }) {
  return (
    <div className={`stat${tone ? ` tone-${tone}` : ''}`} data-testid={testid}>
      <span className="stat-value num">{value}</span>
      <span className="stat-label">{label}</span>
    </div>
  );
}

export const Header = memo(function Header({ summary, conn, now }: { summary: Summary; conn: ConnInfo; now: number }) {
  return (
    <header className="top">
      <div className="brand">
        <h1>Pulltrace</h1>
        <ConnBadge conn={conn} now={now} />
      </div>
      <section className="stats" aria-label="Cluster summary">
        <Stat label="throughput" value={formatRate(summary.bytesPerSecond)} testid="stat-throughput" />
        <Stat label="active" value={summary.active} tone={summary.active ? 'active' : undefined} testid="stat-active" />
        <Stat label="stalled" value={summary.stalled} tone={summary.stalled ? 'stalled' : undefined} testid="stat-stalled" />
        <Stat label="failed" value={summary.failed} tone={summary.failed ? 'failed' : undefined} testid="stat-failed" />
        <Stat label="completed" value={summary.completed} testid="stat-completed" />
        <Stat
          label="nodes reporting"
          value={`${summary.nodesReporting}/${summary.nodesTotal}`}
          tone={summary.nodesReporting < summary.nodesTotal ? 'stalled' : undefined}
          testid="stat-nodes"
        />
        {summary.nodesContainerdDown > 0 && (
          <Stat
            label="containerd unreachable"
            value={summary.nodesContainerdDown}
            tone="failed"
            testid="stat-containerd-down"
          />
        )}
      </section>
    </header>
  );
});
