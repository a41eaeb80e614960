// @ts-check
/**
 * The shape of a scenario module (bench/runtime.js now; WebSocket scenarios later). A
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
 * @property {"rate" | "bytes" | "MB" | "ms" | "ratio" | "number"} format
 * @property {string} [unit]    shown in the JSON
 * @property {Target} [target]  pass/fail is judged on the median
 * @property {string} [note]    a footnote in the docs
 *
 * @typedef {object} Measurement
 * @property {string} id
 * @property {string} fn                     export of the scenario module run in the child
 * @property {(quick: boolean) => unknown} params
 * @property {number} timeoutMs              the child is killed past this
 * @property {string} [how]                  markdown: what is measured and how
 *
 * @typedef {object} MeasurementResult       what a measurement function returns
 * @property {Record<string, number>} figures
 * @property {Record<string, unknown>} [details]
 * @property {string[]} [warnings]           the figures stand, but something was off
 *
 * @typedef {object} Scenario
 * @property {string} name                   --only takes this
 * @property {string} title
 * @property {string} about                  markdown
 * @property {Measurement[]} measurements
 * @property {Figure[]} figures              in report order
 * @property {(figures: Record<string, number>) => Record<string, number>} [derive]
 *           figures computed from one round's measurements together (e.g. a ratio of two)
 * @property {(details: Record<string, Record<string, any>[]>) => string[]} [detailLines]
 *           markdown lines for the docs from each measurement's `details`, one entry per
 *           successful round (keyed by measurement id)
 */
export {};
