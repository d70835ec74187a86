import { afterEach, describe, expect, it, vi } from 'vitest';
import { decodeEvent, EventStream, readFirstEvent, SseParser, type ConnInfo, type RawEvent } from '../src/stream';
import { AuthError } from '../src/auth';
import type { StreamEvent } from '../src/types';

describe('SseParser', () => {
  it('parses events split across chunks, CRLF and comments', () => {
    const out: RawEvent[] = [];
    const p = new SseParser((e) => out.push(e));
    p.push('retry: 2000\r\n\r\n: heartbeat\n\nid: 7\nevent: pull.progress\nda');
    p.push('ta: {"a":1}\r');
    p.push('\n\r\nid: 8\nevent: alert\ndata: line1\ndata: line2\n\n');
    expect(p.retry).toBe(2000);
    expect(out).toEqual([
      { id: '7', event: 'pull.progress', data: '{"a":1}' },
      { id: '8', event: 'alert', data: 'line1\nline2' },
    ]);
  });
  it('reads a long line that arrives a few characters at a time', () => {
    const out: RawEvent[] = [];
    const p = new SseParser((e) => out.push(e));
    const data = JSON.stringify({ pulls: Array.from({ length: 200 }, (_, i) => ({ id: `n/${i}` })) });
    const text = `id: 9\r\nevent: snapshot\r\ndata: ${data}\r\n\r\n`;
    for (let i = 0; i < text.length; i += 7) p.push(text.slice(i, i + 7));
    expect(out).toEqual([{ id: '9', event: 'snapshot', data }]);
  });
  it('keeps the last id for later events without one and drops empty events', () => {
    const out: RawEvent[] = [];
    const p = new SseParser((e) => out.push(e));
    p.push('id: 3\n\ndata: x\n\n');
    expect(out).toEqual([{ id: '3', event: 'message', data: 'x' }]);
  });
  it('decodes JSON data and numeric ids', () => {
    expect(decodeEvent({ id: '12', event: 'snapshot', data: '{"v":1}' })).toEqual({ id: 12, type: 'snapshot', data: { v: 1 } });
    expect(decodeEvent({ id: null, event: 'message', data: '{"type":"alert"}' })?.type).toBe('alert');
    expect(decodeEvent({ id: '1', event: 'x', data: 'not json' })).toBeNull();
  });
});

/** A fetch double: each call gets the next scripted response (a body written by the test). */
function fakeFetch() {
  const calls: { headers: Record<string, string>; push: (s: string) => void; end: () => void; fail: (e: Error) => void }[] = [];
  const waiting: ((v: void) => void)[] = [];
  let refuse = 0;
  const impl = (async (_url: string, init: RequestInit) => {
    if (refuse > 0) {
      refuse--;
      throw new TypeError('fetch failed');
    }
    let ctl!: ReadableStreamDefaultController<Uint8Array>;
    const body = new ReadableStream<Uint8Array>({ start: (c) => void (ctl = c) });
    const enc = new TextEncoder();
    init.signal?.addEventListener('abort', () => {
      try {
        ctl.error(new Error('aborted'));
      } catch {
        /* closed */
      }
    });
    calls.push({
      headers: { ...(init.headers as Record<string, string>) },
      push: (s) => ctl.enqueue(enc.encode(s)),
      end: () => ctl.close(),
      fail: (e) => ctl.error(e),
    });
    waiting.splice(0).forEach((w) => w());
    return new Response(body, { status: 200, headers: { 'content-type': 'text/event-stream' } });
  }) as unknown as typeof fetch;
  return {
    impl,
    calls,
    refuse: (n: number) => void (refuse = n),
    nextCall: () => new Promise<void>((r) => waiting.push(r)),
  };
}

const tick = () => new Promise((r) => setTimeout(r, 0));

describe('EventStream', () => {
  let stream: EventStream | null = null;
  afterEach(() => {
    stream?.stop();
    vi.useRealTimers();
  });

  it('goes live, batches events per frame, reconnects with Last-Event-ID and shows reconnecting', async () => {
    const f = fakeFetch();
    const batches: StreamEvent[][] = [];
    const states: ConnInfo['state'][] = [];
    const frames: (() => void)[] = [];
    stream = new EventStream({
      url: '/api/v1/events',
      fetchImpl: f.impl,
      onEvents: (e) => batches.push(e),
      onConn: (c) => states.push(c.state),
      schedule: (fn) => frames.push(fn),
      maxDelayMs: 5,
    });
    const first = f.nextCall();
    stream.start();
    await first;
    expect(f.calls[0].headers['Last-Event-ID']).toBeUndefined();
    await tick();
    expect(states.at(-1)).toBe('live');

    f.calls[0].push('retry: 1\n\nid: 5\nevent: snapshot\ndata: {"v":1,"pulls":[]}\n\n');
    f.calls[0].push('id: 6\nevent: pull.progress\ndata: {"v":1}\n\nid: 7\nevent: pull.progress\ndata: {"v":1}\n\n');
    await tick();
    expect(frames).toHaveLength(1); // one frame scheduled for three events
    frames.shift()!();
    expect(batches).toHaveLength(1);
    expect(batches[0].map((e) => e.id)).toEqual([5, 6, 7]);

    const second = f.nextCall();
    f.calls[0].end(); // server restarted
    await tick();
    expect(states).toContain('reconnecting');
    await second;
    expect(f.calls[1].headers['Last-Event-ID']).toBe('7');
    await tick();
    expect(states.at(-1)).toBe('live');
  });

  it('turns offline after failing for long enough and recovers', async () => {
    const f = fakeFetch();
    const states: ConnInfo['state'][] = [];
    f.refuse(3);
    stream = new EventStream({
      url: '/e',
      fetchImpl: f.impl,
      onEvents: () => undefined,
      onConn: (c) => states.push(c.state),
      schedule: (fn) => fn(),
      maxDelayMs: 5,
      offlineAfterMs: 0,
    });
    const call = f.nextCall();
    stream.start();
    await call;
    await tick();
    expect(states[0]).toBe('connecting');
    expect(states).toContain('offline');
    expect(states.at(-1)).toBe('live');
  });

  it('treats a silent connection as dead', async () => {
    const f = fakeFetch();
    const states: ConnInfo['state'][] = [];
    stream = new EventStream({
      url: '/e',
      fetchImpl: f.impl,
      onEvents: () => undefined,
      onConn: (c) => states.push(c.state),
      schedule: (fn) => fn(),
      staleMs: 30,
      maxDelayMs: 5,
    });
    const first = f.nextCall();
    stream.start();
    await first;
    const second = f.nextCall();
    await second; // the watchdog aborted the first connection and we came back
    expect(states).toContain('reconnecting');
    expect(f.calls.length).toBeGreaterThanOrEqual(2);
  });
});

describe('readFirstEvent', () => {
  it("reads a subscription's snapshot and closes the connection", async () => {
    const f = fakeFetch();
    const got = readFirstEvent('api/v1/events?types=rollout.summary', undefined, f.impl);
    await tick();
    f.calls[0].push('retry: 2000\n\nid: 41\nevent: snap');
    f.calls[0].push('shot\ndata: {"v":1,"rollouts":[{"image":"reg/app:2"}]}\n\nid: 42\nevent: rollout.summary\ndata: {}\n\n');
    const e = await got;
    expect(e).toEqual({ id: 41, type: 'snapshot', data: { v: 1, rollouts: [{ image: 'reg/app:2' }] } });
    expect(f.calls[0].headers.Accept).toBe('text/event-stream');
  });
  it("refuses with the server's reason, as an AuthError for 401 and 403", async () => {
    const answer = (status: number) =>
      (async () => new Response(JSON.stringify({ error: 'token expired', field: null }), { status })) as unknown as typeof fetch;
    await expect(readFirstEvent('x', undefined, answer(401))).rejects.toBeInstanceOf(AuthError);
    await expect(readFirstEvent('x', undefined, answer(401))).rejects.toThrow('HTTP 401: token expired');
    await expect(readFirstEvent('x', undefined, answer(400))).rejects.toThrow('HTTP 400: token expired');
  });
  it('fails when the stream ends first', async () => {
    const f = fakeFetch();
    const got = readFirstEvent('x', undefined, f.impl);
    await tick();
    f.calls[0].end();
    await expect(got).rejects.toThrow('ended before its first event');
  });
});
