import { useCallback, useDeferredValue, useEffect, useMemo, useReducer, useRef, useState } from 'react';
import { api } from './api';
import { initialState, reducer } from './state';
import { EventStream, frameScheduler, type ConnInfo } from './stream';
import { buildRows, parseParams, serializeParams, summarize, TABS, visiblePulls, type Tab, type ViewParams } from './view';
import { pullsByImage, rolloutRows, rolloutsFromPulls, summarizeRollout, nodePullsOf } from './rollouts';
import { appendSample, THROUGHPUT_SAMPLES, type Series } from './series';
import type { Pull } from './types';
import { RolloutsView } from './components/RolloutsView';
import { HistoryView } from './components/HistoryView';
import { Header } from './components/Header';
import { Toolbar } from './components/Toolbar';
import { PullList } from './components/PullList';
import { PullDetails } from './components/PullDetails';
import { Alerts } from './components/Alerts';
import { SignIn } from './components/SignIn';
import { AuthError } from './auth';

function useUrlParams(): [ViewParams, (patch: Partial<ViewParams>, push?: boolean) => void] {
  const [params, setParams] = useState<ViewParams>(() => parseParams(window.location.search));
  const ref = useRef(params);
  ref.current = params;
  useEffect(() => {
    const onPop = () => setParams(parseParams(window.location.search));
    window.addEventListener('popstate', onPop);
    return () => window.removeEventListener('popstate', onPop);
  }, []);
  const update = useCallback((patch: Partial<ViewParams>, push = false) => {
    const next = { ...ref.current, ...patch };
    ref.current = next;
    const url = window.location.pathname + serializeParams(next) + window.location.hash;
    if (push) window.history.pushState(null, '', url);
    else window.history.replaceState(null, '', url);
    setParams(next);
  }, []);
  return [params, update];
}

function useNow(ms: number): number {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), ms);
    return () => clearInterval(t);
  }, [ms]);
  return now;
}

export function App() {
  const [state, dispatch] = useReducer(reducer, undefined, initialState);
  const [conn, setConn] = useState<ConnInfo>({ state: 'connecting', since: Date.now(), attempts: 0, error: null, nextAttemptAt: null });
  const [loadError, setLoadError] = useState<string | null>(null);
  const [authError, setAuthError] = useState<AuthError | null>(null);
  const [params, update] = useUrlParams();
  const now = useNow(1000);

  useEffect(() => {
    const ctrl = new AbortController();
    const failed = (e: unknown) => {
      if (ctrl.signal.aborted) return;
      if (e instanceof AuthError) setAuthError(e);
      setLoadError(e instanceof Error ? e.message : String(e));
    };
    let stream: EventStream | null = null;
    const startStream = () => {
      if (ctrl.signal.aborted) return;
      stream = new EventStream({
        url: api.eventsUrl,
        onEvents: (events) => dispatch({ type: 'batch', actions: events.map((event) => ({ type: 'event', event })) }),
        onConn: setConn,
      }).start();
    };
    if (parseParams(window.location.search).tab === 'rollouts') {
      // The Rollouts view paints from the server's summaries (a few hundred bytes); the stream
      // (whose snapshot holds every pull with its layers: megabytes on thousands of nodes) is
      // asked for once they are here, so that the server writes the small answer first.
      // The stream starts after the next frame: reading its snapshot takes the page's thread
      // for a while, which must come after the summaries are painted.
      api
        .rollouts(ctrl.signal)
        .then((rollouts) => dispatch({ type: 'rollouts', rollouts }))
        .catch(failed)
        .finally(() => frameScheduler(startStream));
    } else {
      // A first page of pulls paints the list quickly; the stream's own snapshot supersedes it.
      Promise.all([api.pulls(ctrl.signal), api.nodes(ctrl.signal).catch(() => undefined)])
        .then(([pulls, nodes]) => {
          setLoadError(null);
          dispatch({ type: 'rest-snapshot', pulls, nodes });
        })
        .catch(failed);
      startStream();
    }
    return () => {
      ctrl.abort();
      stream?.stop();
    };
  }, []);

  const filters = useDeferredValue(
    useMemo(() => ({ image: params.image, node: params.node, namespace: params.namespace, pod: params.pod }), [
      params.image,
      params.node,
      params.namespace,
      params.pod,
    ]),
  );
  const visible = useMemo(() => visiblePulls(state.pulls.values(), filters), [state.pulls, filters]);
  const rows = useMemo(() => buildRows(visible, params.group), [visible, params.group]);
  const summary = useMemo(() => summarize(state.pulls.values(), state.nodes.values()), [state.pulls, state.nodes]);

  // The cluster's throughput, sampled once a second while the page is open.
  const [throughput, setThroughput] = useState<Series>({ t: [], v: [] });
  const bps = useRef(0);
  bps.current = summary.bytesPerSecond;
  const live = conn.state === 'live';
  useEffect(() => {
    if (live) setThroughput((s) => appendSample(s, now / 1000, bps.current, THROUGHPUT_SAMPLES));
  }, [now, live]);

  // Rollouts: the server's summaries; images it has none for (finished, or an older server)
  // are summed up here from the pulls.
  const byImage = useMemo(() => (params.tab === 'rollouts' ? pullsByImage(state.pulls.values()) : new Map<string, Pull[]>()), [state.pulls, params.tab]);
  const rollouts = useMemo(() => {
    if (params.tab !== 'rollouts') return [];
    if (!state.serverRollouts) return [...rolloutsFromPulls(state.pulls.values()).values()];
    const all = new Map(state.rollouts);
    for (const [image, list] of byImage) if (!all.has(image)) all.set(image, summarizeRollout(image, nodePullsOf(list, image)));
    return [...all.values()];
  }, [params.tab, state.serverRollouts, state.rollouts, state.pulls, byImage]);
  const rRows = useMemo(() => rolloutRows(rollouts, byImage, filters.image), [rollouts, byImage, filters.image]);
  const openRollout = params.rollout ? rollouts.find((r) => r.image === params.rollout) ?? null : null;

  // A pull opened from the history may have left the tables: its record comes with it.
  const [fromHistory, setFromHistory] = useState<Pull | null>(null);
  const selected = params.pull ? state.pulls.get(params.pull) ?? (fromHistory?.id === params.pull ? fromHistory : null) : null;
  const open = useCallback((id: string) => update({ pull: id }, true), [update]);
  const openHistoryPull = useCallback(
    (p: Pull) => {
      setFromHistory(p);
      update({ pull: p.id }, true);
    },
    [update],
  );
  const setTab = useCallback((tab: Tab) => update({ tab, pull: null }, true), [update]);
  const openImage = useCallback((image: string) => update({ rollout: image }, true), [update]);
  const closeImage = useCallback(() => update({ rollout: null }, true), [update]);

  // Keyboard: 1, 2, 3 switch views (outside text fields).
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      const el = e.target as HTMLElement | null;
      if (e.altKey || e.ctrlKey || e.metaKey || (el && /^(INPUT|SELECT|TEXTAREA)$/.test(el.tagName))) return;
      const i = ['1', '2', '3'].indexOf(e.key);
      if (i >= 0) setTab(TABS[i]);
    };
    window.addEventListener('keydown', onKey);
    return () => window.removeEventListener('keydown', onKey);
  }, [setTab]);
  const close = useCallback(() => update({ pull: null }, true), [update]);

  // Layers come with pull.started/completed and snapshots; fetch them when we lack them.
  const needLayers = selected != null && !selected.layers;
  useEffect(() => {
    if (!needLayers || !params.pull) return;
    const ctrl = new AbortController();
    api
      .pull(params.pull, ctrl.signal)
      .then((pull) => dispatch({ type: 'pull-detail', pull }))
      .catch(() => undefined);
    return () => ctrl.abort();
  }, [needLayers, params.pull]);

  const stale = conn.state !== 'live';
  if (authError && state.pulls.size === 0 && conn.state !== 'live') {
    return (
      <div className="app">
        <Header summary={summary} conn={conn} now={now} />
        <main className="content">
          <SignIn error={authError} />
        </main>
      </div>
    );
  }
  return (
    <div className={`app${params.pull ? ' with-details' : ''}${stale ? ' stale' : ''}`}>
      <Header summary={summary} conn={conn} now={now} />
      <nav className="tabs" aria-label="Views">
        {TABS.map((t, i) => (
          <button
            key={t}
            type="button"
            className={`tab${params.tab === t ? ' current' : ''}`}
            aria-current={params.tab === t ? 'page' : undefined}
            onClick={() => setTab(t)}
            title={`${t} (key ${i + 1})`}
            data-testid={`tab-${t}`}
          >
            {t === 'pulls' ? 'Pulls' : t === 'rollouts' ? 'Rollouts' : 'History'}
          </button>
        ))}
      </nav>
      <Toolbar params={params} update={update} shown={visible.length} total={state.pulls.size} />
      <main className="content">
        {/* Overlays, so that the list never moves when the connection comes and goes. */}
        {stale && state.pulls.size > 0 && (
          <div className="stale-banner" role="note">
            Not live: {conn.state === 'connecting' ? 'connecting to the event stream' : 'these figures may be out of date'}.
          </div>
        )}
        {loadError && state.pulls.size === 0 && conn.state !== 'live' && (
          <div className="stale-banner" role="alert">
            Could not load pulls: {loadError}
          </div>
        )}
        {params.tab === 'pulls' && (
          <PullList rows={rows} selectedId={params.pull} onOpen={open} empty={state.pulls.size === 0} speeds={state.speeds} />
        )}
        {params.tab === 'rollouts' && (
          <RolloutsView
            rows={rRows}
            throughput={throughput}
            pulls={state.pulls}
            openImage={params.rollout}
            rollout={openRollout}
            selectedId={params.pull}
            speeds={state.speeds}
            onOpen={openImage}
            onClose={closeImage}
            onOpenPull={open}
          />
        )}
        {params.tab === 'history' && (
          <HistoryView
            filters={{ image: filters.image, node: filters.node, namespace: filters.namespace, since: params.since, until: params.until }}
            onOpenPull={openHistoryPull}
          />
        )}
        {params.pull && (
          <PullDetails
            id={params.pull}
            pull={selected}
            history={state.history.get(params.pull) ?? []}
            speed={state.speeds.get(params.pull)}
            node={selected ? state.nodes.get(selected.node) ?? null : null}
            now={now}
            onClose={close}
          />
        )}
      </main>
      <Alerts alerts={state.alerts} dispatch={dispatch} onOpen={open} />
    </div>
  );
}
