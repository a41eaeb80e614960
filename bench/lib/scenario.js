// @ts-check
/**
 * The shape of a scenario module (bench/runtime.js, bench/websocket.js). A
 * scenario module exports `scenario` and the functions its measurements name; bench/run.js
 * imports it in the parent only to read `scenario`, and calls each measurement's `fn` in a
 * fresh child process per round.
 *
 * @typedef {object} Target
 * @property {">=" | "<="} op
 * @property {number} value
 *
 * @typedef {object} Figure
 * @property {string} id        key in a measurement's `figures`
 * @property {string} label
 * @property {"rate" | "bytes" | "MB" | "ms" | "us" | "cores" | "ratio" | "number"} format
 * @property {string} [unit]    shown in the JSON
 * @property {Target} [target]  pass/fail is judged on the median
 * @property {string} [note]    a footnote in the docs
 *
 * @typedef {object} Measurement
 * @property {string} id
 * @property {string} fn                     export of the scenario module run in the child
 * @property {(quick: boolean, opts?: { large: boolean }) => unknown} params
 * @property {number} timeoutMs              the child is killed past this
 * @property {string} [how]                  markdown: what is measured and how
 * @property {string[]} [groups]             more names --only selects it by (e.g. "echo")
 * @property {(opts: { large: boolean }) => boolean} [enabled]  run only when this holds (e.g. --large)
 * @property {boolean} [explicit]            a diagnosis: runs only when --only names its id
 *
 * @typedef {object} MeasurementResult       what a measurement function returns
 * @property {Record<string, number>} figures
 * @property {Record<string, unknown>} [details]
 * @property {string[]} [warnings]           the figures stand, but something was off
 * @property {number} [subprocessCpuMs]      CPU time of processes the measurement started
 *           (servers, load generators): not counted as background load
 *
 * @typedef {object} Scenario
 * @property {string} name                   --only takes this
 * @property {string} title
 * @property {string} about                  markdown
 * @property {Measurement[]} measurements
 * @property {Figure[]} figures              in report order
 * @property {number} [rounds]               default rounds when --rounds is not given (else 5)
 * @property {boolean} [alternate]           run the measurements in reverse order in even rounds
 *           (side-by-side pairs: neither side always goes first)
 * @property {Comparison[]} [comparisons]    side-by-side rows: the docs' table and SVG chart
 * @property {(figures: Record<string, number>) => Record<string, number>} [derive]
 *           figures computed from one round's measurements together (e.g. a ratio of two)
 * @property {(details: Record<string, Record<string, any>[]>) => string[]} [detailLines]
 *           markdown lines for the docs from each measurement's `details`, one entry per
 *           successful round (keyed by measurement id)
 *
 * @typedef {object} Comparison             one row of a side-by-side table
 * @property {string} section
 * @property {string} label
 * @property {string} a                      figure id: corral
 * @property {string | null} b               figure id: raw ws (or the baseline the row names)
 * @property {string} [ratio]                figure id: a / b per round (its target judges the row)
 * @property {boolean} [optional]            shown only when `a` was measured (a diagnosis)
 */
export {};
