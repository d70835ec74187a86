// The History view: finished pulls searched by image, node, namespace and time
// (/api/v1/history), and one image's duration percentiles over time (/api/v1/history/stats).

import { useEffect, useMemo, useState } from 'react';
import { api } from '../api';
import { DASH, formatBytes, formatDuration, formatTime } from '../format';
import { buckets, historyQuery, percentileSeries, spanOf, type HistoryFilters, type ImageStats } from '../history';
import { phasesOf } from '../phases';
import type { Pull } from '../types';
import { ImageName } from './PullList';
import { StateBadge } from './bits';
import { TimeChart } from './TimeChart';

const BUCKETS = 12;
const PCT_LINES = [
  { label: 'p50', color: '--completed', points: true },
  { label: 'p95', color: '--stalled', points: true },
  { label: 'max', color: '--failed', points: true },
];

function statsQuery(f: HistoryFilters, since: string, until: string): string {
  const q = new URLSearchParams();
  if (f.image.trim()) q.set('image', f.image.trim());
  if (f.node.trim()) q.set('node', f.node.trim());
  if (f.namespace.trim()) q.set('namespace', f.namespace.trim());
  q.set('since', since);
  if (until) q.set('until', until);
  return q.toString();
}

export function HistoryView({ filters, onOpenPull }: { filters: HistoryFilters; onOpenPull: (p: Pull) => void }) {
  const [pages, setPages] = useState<{ pulls: Pull[]; cont: string | null; error: string | null; loading: boolean }>({
    pulls: [],
    cont: null,
    error: null,
    loading: true,
  });
  const [more, setMore] = useState<string | null>(null);
  const [stats, setStats] = useState<ImageStats[] | null>(null);
  const [chart, setChart] = useState<{ image: string; series: ReturnType<typeof percentileSeries> } | null>(null);
  const key = historyQuery(filters, null);

  useEffect(() => {
    const ctrl = new AbortController();
    setPages((p) => ({ ...p, loading: true, error: null }));
    api
      .history(historyQuery(filters, more), ctrl.signal)
      .then((r) =>
        setPages((p) => ({ pulls: more ? [...p.pulls, ...r.pulls] : r.pulls, cont: r.continue, error: null, loading: false })),
      )
      .catch((e) => {
        if (!ctrl.signal.aborted) setPages({ pulls: [], cont: null, error: e instanceof Error ? e.message : String(e), loading: false });
      });
    return () => ctrl.abort();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [key, more]);
  useEffect(() => setMore(null), [key]);

  useEffect(() => {
    const ctrl = new AbortController();
    const since = filters.since.trim() || '24h';
    api
      .stats(statsQuery(filters, since, filters.until.trim()), ctrl.signal)
      .then(async (images) => {
        setStats(images);
        // The chart follows the image with the most pulls in the window (the filter's, if one).
        const top = [...images].sort((a, b) => b.pulls - a.pulls)[0];
        if (!top) return setChart(null);
        const end = filters.until.trim() ? Date.parse(filters.until.trim()) || Date.now() : Date.now();
        const bs = buckets(end, spanOf(since), BUCKETS);
        const answers = await Promise.all(
          bs.map((b) => api.stats(statsQuery({ ...filters, image: top.image }, b.since, b.until), ctrl.signal).catch(() => [])),
        );
        setChart({ image: top.image, series: percentileSeries(bs, answers, top.image) });
      })
      .catch((e) => {
        if (!ctrl.signal.aborted) {
          setStats(null);
          setChart(null);
          setPages((p) => ({ ...p, error: p.error ?? (e instanceof Error ? e.message : String(e)) }));
        }
      });
    return () => ctrl.abort();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [key]);

  const ys = useMemo(() => (chart ? [chart.series.p50, chart.series.p95, chart.series.max] : []), [chart]);

  return (
    <section className="history" aria-label="History">
      {pages.error && (
        <p className="error-box" role="alert">
          History not available: {pages.error}
          {pages.error.includes('404') && ' (the server keeps a history only with PULLTRACE_DATA_DIR)'}
        </p>
      )}
      <div className="panel chart-panel">
        <h2 className="panel-title">
          Pull duration percentiles {chart && <ImageName image={chart.image} />}{' '}
          <span className="muted">{filters.since.trim() || '24h'} in {BUCKETS} steps</span>
        </h2>
        {chart ? (
          <TimeChart x={chart.series.t} ys={ys} lines={PCT_LINES} height={160} label={`Duration percentiles of ${chart.image}`} format={(v) => formatDuration(v)} testid="percentile-chart" />
        ) : (
          <p className="muted">No finished pull in this window.</p>
        )}
      </div>
      {stats && stats.length > 0 && (
        <div className="table-wrap panel">
          <table className="stats-table" aria-label="Per-image statistics" data-testid="stats-table">
            <thead>
              <tr>
                <th scope="col">Image</th>
                <th scope="col" className="r">Pulls</th>
                <th scope="col" className="r">Failed</th>
                <th scope="col" className="r">p50</th>
                <th scope="col" className="r">p95</th>
                <th scope="col" className="r">max</th>
                <th scope="col" className="r">Downloaded</th>
                <th scope="col" className="r">Cached</th>
              </tr>
            </thead>
            <tbody>
              {stats.map((s) => (
                <tr key={s.image}>
                  <td><ImageName image={s.image} /></td>
                  <td className="r num">{s.pulls}</td>
                  <td className="r num" title={Object.entries(s.failuresByReason).map(([k, v]) => `${k}: ${v}`).join('\n')}>{s.failed}</td>
                  <td className="r num">{formatDuration(s.durationSeconds.p50)}</td>
                  <td className="r num">{formatDuration(s.durationSeconds.p95)}</td>
                  <td className="r num">{formatDuration(s.durationSeconds.max)}</td>
                  <td className="r num">{formatBytes(s.bytesDownloaded)}</td>
                  <td className="r num">{s.cachedShare == null ? DASH : `${Math.round(s.cachedShare * 100)}%`}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <div className="table-wrap panel">
        <table className="history-table" aria-label="Finished pulls" data-testid="history-table">
          <thead>
            <tr>
              <th scope="col">Started</th>
              <th scope="col">Image</th>
              <th scope="col">Node</th>
              <th scope="col">State</th>
              <th scope="col" className="r">Took</th>
              <th scope="col" className="r" title="kubelet's queue: its 'including waiting' less its pull time">Waiting</th>
              <th scope="col" className="r">Downloading</th>
              <th scope="col" className="r" title="from the last layer to kubelet's Pulled">Unpacking</th>
              <th scope="col" className="r">Size</th>
            </tr>
          </thead>
          <tbody>
            {pages.pulls.map((p) => {
              const ph = phasesOf(p);
              return (
                <tr key={p.id} data-pull-id={p.id} tabIndex={0} onClick={() => onOpenPull(p)} onKeyDown={(e) => e.key === 'Enter' && onOpenPull(p)}>
                  <td className="num">{formatTime(p.startedAt)}</td>
                  <td><ImageName image={p.image} /></td>
                  <td>{p.node}</td>
                  <td><StateBadge state={p.state} /></td>
                  <td className="r num">{formatDuration(p.durationSeconds)}</td>
                  <td className="r num">{formatDuration(ph.waitingSeconds)}</td>
                  <td className="r num">{formatDuration(ph.downloadingSeconds)}</td>
                  <td className="r num">{formatDuration(ph.unpackingSeconds)}</td>
                  <td className="r num">{formatBytes(p.totalBytes)}</td>
                </tr>
              );
            })}
          </tbody>
        </table>
        {!pages.loading && pages.pulls.length === 0 && !pages.error && <p className="empty">No finished pull matches.</p>}
        {pages.cont && (
          <button type="button" className="more" onClick={() => setMore(pages.cont)} disabled={pages.loading}>
            More
          </button>
        )}
      </div>
    </section>
  );
}
