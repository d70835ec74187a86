// Short time series kept in the browser: the cluster's throughput (one sample a second) and
// each pull's speed (one sample per event that carries it). Fixed-size, oldest dropped.

export interface Series {
  /** Unix seconds */
  t: number[];
  v: number[];
}

export const THROUGHPUT_SAMPLES = 600; // ten minutes at one a second
export const SPEED_SAMPLES = 120;

/** A copy of `s` with (t, v) appended; a sample at the same second replaces the last one. */
export function appendSample(s: Series | undefined, t: number, v: number, max: number): Series {
  const ts = s ? s.t.slice() : [];
  const vs = s ? s.v.slice() : [];
  if (ts.length && Math.floor(ts[ts.length - 1]) === Math.floor(t)) {
    ts[ts.length - 1] = t;
    vs[vs.length - 1] = v;
  } else if (ts.length && t < ts[ts.length - 1]) {
    return s!; // out of order (a replayed event): keep the series as it is
  } else {
    ts.push(t);
    vs.push(v);
  }
  const drop = ts.length - max;
  return drop > 0 ? { t: ts.slice(drop), v: vs.slice(drop) } : { t: ts, v: vs };
}

/** SVG polyline points for a sparkline of `s` in a w×h box (0 at the bottom). */
export function sparkPoints(s: Series | undefined, w: number, h: number): string {
  if (!s || s.t.length < 2) return '';
  const t0 = s.t[0];
  const dt = s.t[s.t.length - 1] - t0 || 1;
  let vmax = 0;
  for (const v of s.v) vmax = Math.max(vmax, v);
  vmax = vmax || 1;
  const pts: string[] = [];
  for (let i = 0; i < s.t.length; i++) {
    const x = ((s.t[i] - t0) / dt) * w;
    const y = h - (s.v[i] / vmax) * (h - 1);
    pts.push(`${x.toFixed(1)},${y.toFixed(1)}`);
  }
  return pts.join(' ');
}
