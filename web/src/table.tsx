// Sortable tables on TanStack Table's core (headless: the sorting state and row models are the library's,
// the markup is ours). Each header is a button; aria-sort says the current order.
import {
  createTable,
  getCoreRowModel,
  getSortedRowModel,
  type ColumnDef,
  type SortingState,
  type TableOptionsResolved,
  type Updater,
} from "@tanstack/table-core";
import type { ComponentChildren } from "preact";
import { useState } from "preact/hooks";

export interface Column<T> {
  id: string;
  header: string;
  /** The value sorted on (and shown when there is no `render`). */
  value: (row: T) => string | number | null;
  render?: (row: T) => ComponentChildren;
  numeric?: boolean;
}

interface Props<T> {
  rows: T[];
  columns: Column<T>[];
  caption: string;
  initialSort?: SortingState;
  rowKey: (row: T) => string;
  empty?: ComponentChildren;
}

function useSortedTable<T>(rows: T[], columns: Column<T>[], initialSort: SortingState) {
  const [sorting, setSorting] = useState<SortingState>(initialSort);
  const defs: ColumnDef<T, unknown>[] = columns.map((c) => ({
    id: c.id,
    header: c.header,
    accessorFn: (row: T) => c.value(row),
    sortUndefined: "last",
    sortDescFirst: Boolean(c.numeric),
  }));
  const options: TableOptionsResolved<T> = {
    data: rows,
    columns: defs,
    state: { sorting },
    onStateChange: () => {},
    onSortingChange: (updater: Updater<SortingState>) =>
      setSorting((old) => (typeof updater === "function" ? updater(old) : updater)),
    getCoreRowModel: getCoreRowModel(),
    getSortedRowModel: getSortedRowModel(),
    renderFallbackValue: null,
  };
  const table = createTable(options);
  // Every feature's state must be present (as TanStack's own adapters do): the defaults, then ours.
  table.setOptions((prev) => ({ ...prev, state: { ...table.initialState, sorting } }));
  return table;
}

export function DataTable<T>({ rows, columns, caption, initialSort = [], rowKey, empty }: Props<T>) {
  const table = useSortedTable(rows, columns, initialSort);
  const byId = new Map(columns.map((c) => [c.id, c]));
  if (!rows.length && empty) return <p class="muted">{empty}</p>;
  return (
    <div class="table-wrap" role="region" aria-label={caption} tabIndex={0}>
      <table>
        <caption class="sr-only">{caption}</caption>
        <thead>
          {table.getHeaderGroups().map((group) => (
            <tr key={group.id}>
              {group.headers.map((header) => {
                const column = byId.get(header.column.id)!;
                const sorted = header.column.getIsSorted();
                const ariaSort = sorted === "asc" ? "ascending" : sorted === "desc" ? "descending" : "none";
                return (
                  <th key={header.id} scope="col" aria-sort={ariaSort} class={column.numeric ? "num" : undefined}>
                    <button type="button" class="sort" onClick={header.column.getToggleSortingHandler()}>
                      {column.header}
                      <span aria-hidden="true">{sorted === "asc" ? " ▲" : sorted === "desc" ? " ▼" : ""}</span>
                    </button>
                  </th>
                );
              })}
            </tr>
          ))}
        </thead>
        <tbody>
          {table.getRowModel().rows.map((row) => (
            <tr key={rowKey(row.original)}>
              {columns.map((column) => (
                <td key={column.id} class={column.numeric ? "num" : undefined}>
                  {column.render ? column.render(row.original) : (column.value(row.original) ?? "—")}
                </td>
              ))}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
