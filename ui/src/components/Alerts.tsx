import type { Dispatch } from 'react';
import { formatTime } from '../format';
import type { Action, AlertEntry } from '../state';

const SHOWN = 4;

export function Alerts({ alerts, dispatch, onOpen }: { alerts: AlertEntry[]; dispatch: Dispatch<Action>; onOpen: (id: string) => void }) {
  return (
    <section className="alerts" aria-label="Alerts" aria-live="polite">
      {alerts.slice(0, SHOWN).map((a) => (
        <div key={a.key} className={`alert sev-${a.severity}`} data-testid="alert">
          <div className="alert-head">
            <span className="badge">{a.severity}</span>
            <strong>{a.name}</strong>
            <time className="num muted">{formatTime(a.time)}</time>
            <button type="button" className="close" aria-label={`Dismiss alert ${a.name}`} onClick={() => dispatch({ type: 'dismiss-alert', key: a.key })}>
              ×
            </button>
          </div>
          <p>{a.summary}</p>
          {a.description && a.description !== a.summary && <p className="muted">{a.description}</p>}
          {a.pullId && (
            <button type="button" className="link" onClick={() => onOpen(a.pullId!)}>
              show pull{a.node ? ` on ${a.node}` : ''}
            </button>
          )}
        </div>
      ))}
      {alerts.length > SHOWN && (
        <div className="alert more">
          {alerts.length - SHOWN} more{' '}
          <button type="button" className="link" onClick={() => dispatch({ type: 'clear-alerts' })}>
            dismiss all
          </button>
        </div>
      )}
    </section>
  );
}
