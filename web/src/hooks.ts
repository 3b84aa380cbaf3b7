// Fetching for the views: each part of a page is loaded on its own, in parallel, and drawn when it arrives.
import { useEffect, useState } from "preact/hooks";
import { get } from "./api";

export interface Loaded<T> {
  data: T | null;
  error: string | null;
  loading: boolean;
}

// Requests started before their view is drawn (at boot, while GET /session is in flight): taken once by the
// first `useGet` of the same path. A failed one (no session yet) is simply asked again.
const early = new Map<string, Promise<unknown>>();

export function prefetch(paths: string[]): void {
  for (const path of paths) {
    const started = get(path);
    started.catch(() => undefined);
    early.set(path, started);
  }
}

function fetchOnce<T>(path: string, signal: AbortSignal): Promise<T> {
  const started = early.get(path) as Promise<T> | undefined;
  if (!started) return get<T>(path, signal);
  early.delete(path);
  return started.catch(() => get<T>(path, signal));
}

/** GET `path` (null: nothing to load); reloads when the path changes, drops a stale answer. */
export function useGet<T>(path: string | null, version = 0): Loaded<T> & { set: (data: T) => void } {
  const [state, setState] = useState<Loaded<T>>({ data: null, error: null, loading: path !== null });
  useEffect(() => {
    if (path === null) return;
    const abort = new AbortController();
    setState((old) => ({ data: old.data, error: null, loading: true }));
    fetchOnce<T>(path, abort.signal).then(
      (data) => {
        if (!abort.signal.aborted) setState({ data, error: null, loading: false });
      },
      (error: Error) => {
        if (!abort.signal.aborted) setState({ data: null, error: error.message, loading: false });
      },
    );
    return () => abort.abort();
  }, [path, version]);
  return { ...state, set: (data: T) => setState({ data, error: null, loading: false }) };
}

/** Marks the page drawn: `<body data-ready="name">` once `done` (every part of the view is on screen, charts
 * included), cleared while a view loads. Browser tests and the draw-time benchmark wait on it. */
export function useReady(name: string, done: boolean): void {
  useEffect(() => {
    if (!done) {
      delete document.body.dataset.ready;
      return;
    }
    // After this render's charts have drawn (they draw in a microtask once their library is loaded).
    const frame = requestAnimationFrame(() => {
      document.body.dataset.ready = name;
    });
    return () => cancelAnimationFrame(frame);
  }, [name, done]);
}
