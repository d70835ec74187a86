import type { GroupBy, ViewParams } from '../view';

const FIELDS: { key: 'image' | 'node' | 'namespace' | 'pod'; label: string; placeholder: string }[] = [
  { key: 'image', label: 'Image', placeholder: 'registry/repo:tag' },
  { key: 'node', label: 'Node', placeholder: 'node name' },
  { key: 'namespace', label: 'Namespace', placeholder: 'namespace' },
  { key: 'pod', label: 'Pod', placeholder: 'pod name' },
];

export function Toolbar({
  params,
  update,
  shown,
  total,
}: {
  params: ViewParams;
  update: (p: Partial<ViewParams>) => void;
  shown: number;
  total: number;
}) {
  const filtered = FIELDS.some((f) => params[f.key]);
  const history = params.tab === 'history';
  return (
    <form className="toolbar" role="search" aria-label="Filter pulls" onSubmit={(e) => e.preventDefault()}>
      {FIELDS.map((f) => (
        <label key={f.key} className="filter">
          <span>{f.label}</span>
          <input
            type="search"
            name={f.key}
            value={params[f.key]}
            placeholder={f.placeholder}
            aria-label={`Filter by ${f.label.toLowerCase()}`}
            autoComplete="off"
            spellCheck={false}
            onChange={(e) => update({ [f.key]: e.target.value })}
          />
        </label>
      ))}
      {history &&
        (['since', 'until'] as const).map((k) => (
          <label key={k} className="filter">
            <span>{k}</span>
            <input
              type="search"
              name={k}
              value={params[k]}
              placeholder={k === 'since' ? '24h or 2026-11-21T10:00Z' : 'now'}
              aria-label={`Pulls started ${k === 'since' ? 'since' : 'before'} (a time or a duration ago)`}
              autoComplete="off"
              spellCheck={false}
              onChange={(e) => update({ [k]: e.target.value })}
            />
          </label>
        ))}
      {params.tab === 'pulls' && (
      <label className="filter group">
        <span>Group</span>
        <select
          value={params.group}
          aria-label="Group pulls by"
          onChange={(e) => update({ group: e.target.value as GroupBy })}
        >
          <option value="none">none</option>
          <option value="node">node</option>
          <option value="image">image</option>
        </select>
      </label>
      )}
      {!history && (
      <div className="count num" aria-live="polite" data-testid="pull-count">
        {filtered ? `${shown} of ${total}` : total} {total === 1 ? 'pull' : 'pulls'}
        {filtered && (
          <button
            type="button"
            className="link"
            onClick={() => update({ image: '', node: '', namespace: '', pod: '' })}
            aria-label="Clear filters"
          >
            clear
          </button>
        )}
      </div>
      )}
    </form>
  );
}
