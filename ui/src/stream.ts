// The event stream: Server-Sent Events read with fetch() (so that reconnects carry
// Last-Event-ID from our own state and the connection state is ours to show), reconnect
// with backoff, a watchdog for silent connections, and per-frame batching of events.

import { refusal } from './auth';
import type { StreamEvent } from './types';

export interface RawEvent {
  id: string | null;
  event: string;
  data: string;
}

/** Incremental text/event-stream parser (WHATWG HTML "event stream interpretation"). */
export class SseParser {
  private buf = '';
  /** where the search for the next line end resumes in buf (what is before it has none) */
  private scanned = 0;
  private data: string[] = [];
  private type = '';
  private lastId: string | null = null;
  /** Last `retry:` value in milliseconds, if the server sent one. */
  retry: number | null = null;

  constructor(private readonly emit: (e: RawEvent) => void) {}

  push(chunk: string) {
    this.buf += chunk;
    let start = 0;
    // A snapshot is one line of megabytes arriving in many chunks: each chunk is searched once
    // (searching the whole line again for each chunk would take seconds).
    let i = this.scanned;
    for (;;) {
      const n = this.buf.length;
      while (i < n && this.buf[i] !== '\n' && this.buf[i] !== '\r') i++;
      if (i >= n) break;
      // A CR at the very end may be the first half of CRLF: wait for the next chunk.
      if (this.buf[i] === '\r' && i + 1 >= n) break;
      this.line(this.buf.slice(start, i));
      start = this.buf[i] === '\r' && this.buf[i + 1] === '\n' ? i + 2 : i + 1;
      i = start;
    }
    this.buf = this.buf.slice(start);
    this.scanned = i - start;
  }

  /** Forgets a partial event (the connection it came from is gone). */
  reset() {
    this.buf = '';
    this.scanned = 0;
    this.data = [];
    this.type = '';
  }

  private line(l: string) {
    if (l === '') return this.dispatch();
    if (l[0] === ':') return; // comment (heartbeat)
    const c = l.indexOf(':');
    const field = c < 0 ? l : l.slice(0, c);
    let value = c < 0 ? '' : l.slice(c + 1);
    if (value[0] === ' ') value = value.slice(1);
    switch (field) {
      case 'data':
        this.data.push(value);
        break;
      case 'event':
        this.type = value;
        break;
      case 'id':
        if (!value.includes('\0')) this.lastId = value;
        break;
      case 'retry':
        if (/^\d+$/.test(value)) this.retry = Number(value);
        break;
    }
  }

  private dispatch() {
    if (this.data.length === 0) {
      this.type = '';
      return;
    }
    const e: RawEvent = { id: this.lastId, event: this.type || 'message', data: this.data.join('\n') };
    this.data = [];
    this.type = '';
    this.emit(e);
  }
}

/** A raw event with its JSON parsed; null when the data is not JSON. */
export function decodeEvent(e: RawEvent): StreamEvent | null {
  let data: unknown;
  try {
    data = JSON.parse(e.data);
  } catch {
    return null;
  }
  const n = e.id != null && /^\d+$/.test(e.id) ? Number(e.id) : null;
  const type = e.event !== 'message' ? e.event : (data as any)?.type ?? 'message';
  return { id: n, type, data };
}

export type ConnState = 'connecting' | 'live' | 'reconnecting' | 'offline';

export interface ConnInfo {
  state: ConnState;
  /** when the current state began (ms since epoch) */
  since: number;
  /** failed attempts since the last good connection */
  attempts: number;
  /** the last failure, for the tooltip */
  error: string | null;
  /** when the next attempt starts, while reconnecting/offline */
  nextAttemptAt: number | null;
}

export interface StreamOptions {
  url: string;
  /** Called with the events of one animation frame, in order. */
  onEvents: (events: StreamEvent[]) => void;
  onConn: (c: ConnInfo) => void;
  /** An id to resume from on the first connection (later ones use the last id seen). */
  lastEventId?: number | null;
  /** Without bytes for this long (heartbeats come every 15 s) the connection is dead. */
  staleMs?: number;
  /** After failing for this long the state turns from reconnecting to offline. */
  offlineAfterMs?: number;
  maxDelayMs?: number;
  fetchImpl?: typeof fetch;
  schedule?: (fn: () => void) => void;
}

/** Runs requestAnimationFrame, or a timer when the page is hidden (rAF pauses there). */
export function frameScheduler(fn: () => void) {
  let done = false;
  const run = () => {
    if (done) return;
    done = true;
    fn();
  };
  if (typeof requestAnimationFrame === 'function' && !(typeof document !== 'undefined' && document.hidden)) {
    requestAnimationFrame(run);
    setTimeout(run, 250);
  } else {
    setTimeout(run, 50);
  }
}

export class EventStream {
  private stopped = false;
  private ctrl: AbortController | null = null;
  private queue: StreamEvent[] = [];
  private flushScheduled = false;
  private wake: (() => void) | null = null;
  private lastId: number | null;
  private conn: ConnInfo = { state: 'connecting', since: Date.now(), attempts: 0, error: null, nextAttemptAt: null };
  private readonly o: Required<Omit<StreamOptions, 'fetchImpl' | 'schedule'>> & Pick<StreamOptions, 'fetchImpl' | 'schedule'>;

  constructor(opts: StreamOptions) {
    this.o = { staleMs: 45000, offlineAfterMs: 30000, maxDelayMs: 15000, lastEventId: null, ...opts };
    this.lastId = opts.lastEventId ?? null;
  }

  /** The id sent as Last-Event-ID on the next connection. */
  get lastEventId(): number | null {
    return this.lastId;
  }

  start() {
    this.o.onConn(this.conn);
    if (typeof window !== 'undefined') window.addEventListener('online', this.onOnline);
    void this.loop();
    return this;
  }

  stop() {
    this.stopped = true;
    this.ctrl?.abort();
    this.wake?.();
    if (typeof window !== 'undefined') window.removeEventListener('online', this.onOnline);
  }

  private onOnline = () => this.wake?.();

  private setConn(c: Partial<ConnInfo>) {
    const state = c.state ?? this.conn.state;
    this.conn = { ...this.conn, ...c, since: state !== this.conn.state ? Date.now() : this.conn.since };
    this.o.onConn(this.conn);
  }

  private push(e: StreamEvent) {
    this.queue.push(e);
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    (this.o.schedule ?? frameScheduler)(() => this.flush());
  }

  private flush() {
    this.flushScheduled = false;
    if (!this.queue.length) return;
    const q = this.queue;
    this.queue = [];
    this.o.onEvents(q);
  }

  private async loop() {
    let retry = 2000;
    let failingSince: number | null = null;
    while (!this.stopped) {
      let error: string | null = null;
      let connected = false;
      const parser = new SseParser((raw) => {
        const ev = decodeEvent(raw);
        if (!ev) return;
        // A snapshot or a new server process may move ids backwards: follow the stream.
        if (ev.id != null) this.lastId = ev.id;
        this.push(ev);
      });
      try {
        await this.connectOnce(parser, () => {
          connected = true;
          failingSince = null;
          this.setConn({ state: 'live', attempts: 0, error: null, nextAttemptAt: null });
        });
        error = 'the server closed the stream';
      } catch (e) {
        error = e instanceof Error ? e.message : String(e);
      }
      if (parser.retry != null) retry = Math.max(500, parser.retry);
      this.flush(); // apply what arrived before the drop
      if (this.stopped) return;
      const now = Date.now();
      if (failingSince == null || connected) failingSince = now;
      const attempts = connected ? 1 : this.conn.attempts + 1;
      const delay = Math.min(this.o.maxDelayMs, retry * Math.pow(1.5, attempts - 1)) * (0.8 + 0.4 * Math.random());
      const offline =
        (typeof navigator !== 'undefined' && navigator.onLine === false) || now - failingSince >= this.o.offlineAfterMs;
      this.setConn({ state: offline ? 'offline' : 'reconnecting', attempts, error, nextAttemptAt: now + delay });
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, delay);
        this.wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.wake = null;
    }
  }

  /** One connection; resolves when the server ends it, throws when it fails. */
  private async connectOnce(parser: SseParser, onOpen: () => void): Promise<void> {
    const ctrl = new AbortController();
    this.ctrl = ctrl;
    const headers: Record<string, string> = { Accept: 'text/event-stream' };
    if (this.lastId != null) headers['Last-Event-ID'] = String(this.lastId);
    let timer: ReturnType<typeof setTimeout> | null = null;
    const arm = () => {
      if (timer) clearTimeout(timer);
      timer = setTimeout(() => ctrl.abort(new Error('no data or heartbeat from the server')), this.o.staleMs);
    };
    try {
      arm();
      const res = await (this.o.fetchImpl ?? fetch)(this.o.url, { headers, signal: ctrl.signal, cache: 'no-store' });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      if (!(res.headers.get('content-type') ?? '').includes('text/event-stream')) throw new Error('not an event stream');
      if (!res.body) throw new Error('no body');
      onOpen();
      const reader = res.body.getReader();
      const dec = new TextDecoder();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        arm();
        parser.push(dec.decode(value, { stream: true }));
      }
    } catch (e) {
      if (ctrl.signal.aborted && ctrl.signal.reason instanceof Error) throw ctrl.signal.reason;
      throw e;
    } finally {
      if (timer) clearTimeout(timer);
      ctrl.abort();
    }
  }
}

/**
 * The first event of a stream (its snapshot), then the connection is closed: a subscription's
 * snapshot read like a REST answer (`types=rollout.summary` gives the rollouts in a few hundred
 * bytes). Throws on a failed request or a stream that ends first.
 */
export async function readFirstEvent(url: string, signal?: AbortSignal, fetchImpl: typeof fetch = fetch): Promise<StreamEvent> {
  const ctrl = new AbortController();
  const abort = () => ctrl.abort();
  signal?.addEventListener('abort', abort);
  try {
    const res = await fetchImpl(url, { headers: { Accept: 'text/event-stream' }, signal: ctrl.signal, cache: 'no-store' });
    if (!res.ok) throw await refusal(res);
    if (!res.body) throw new Error('no body');
    let first: StreamEvent | null = null;
    const parser = new SseParser((raw) => {
      first ??= decodeEvent(raw);
    });
    const reader = res.body.getReader();
    const dec = new TextDecoder();
    while (!first) {
      const { done, value } = await reader.read();
      if (done) throw new Error('the stream ended before its first event');
      parser.push(dec.decode(value, { stream: true }));
    }
    return first;
  } finally {
    signal?.removeEventListener('abort', abort);
    ctrl.abort();
  }
}
