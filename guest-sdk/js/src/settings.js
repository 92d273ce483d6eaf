// Typed policy settings from the JSON the host passes to `configure`.
//
//   const s = settings.parse(text);
//   const cooldown = s.int('cooldown-secs', { default: 300, min: 0 });
//   const windows = s.tables('windows', { default: [] });   // each a Table to read
//   s.done();   // rejects keys nobody read, so a misspelt setting is an error
//
// Errors are PolicyErrors naming the setting by its path, as the Rust SDK's do:
// "setting `windows[0].start`: expected a string, got 8".

import { PolicyError } from './errors.js';

const show = (v) => JSON.stringify(v);
const join = (path, key) => (typeof key === 'number' ? `${path}[${key}]` : path ? `${path}.${key}` : key);

/** Throw the error for the setting at `path`. */
export function fail(path, message) {
  throw new PolicyError(path ? `setting \`${path}\`: ${message}` : `settings: ${message}`);
}

/** Parse settings JSON (empty text counts as `{}`) into a Table. */
export function parse(text) {
  let value;
  try {
    value = JSON.parse(text && text.trim() ? text : '{}');
  } catch (e) {
    throw new PolicyError(`settings: ${e.message}`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) fail('', `expected an object, got ${show(value)}`);
  return new Table(value, '');
}

/** Accept empty settings only (the default `configure`). */
export function expectNone(text) {
  for (const key of Object.keys(parse(text).value)) {
    throw new PolicyError(`unknown setting \`${key}\`: this policy takes no settings`);
  }
}

// ---- converters: (value, path) => typed value; also usable as `item` of list/map ----

/** An integer within [min, max]. */
export const integer = ({ min, max } = {}) => (v, path) => {
  if (typeof v !== 'number' || !Number.isInteger(v)) fail(path, `expected an integer, got ${show(v)}`);
  if (min !== undefined && v < min) fail(path, `must be at least ${min}, got ${v}`);
  if (max !== undefined && v > max) fail(path, `must be at most ${max}, got ${v}`);
  return v;
};
/** Any JSON number. */
export const number = (v, path) => (typeof v === 'number' ? v : fail(path, `expected a number, got ${show(v)}`));
/** A string. */
export const string = (v, path) => (typeof v === 'string' ? v : fail(path, `expected a string, got ${show(v)}`));
/** true or false. */
export const boolean = (v, path) => (typeof v === 'boolean' ? v : fail(path, `expected true or false, got ${show(v)}`));
/** One of the given strings. */
export const oneOf = (options) => (v, path) =>
  (options.includes(v) ? v : fail(path, `expected one of ${options.join(', ')}, got ${show(v)}`));


/** A JSON object of settings; each getter marks its key as read. */
export class Table {
  constructor(value, path) {
    this.value = value;
    this.path = path;
    this.read = new Set();
  }

  /** The setting `key` through `convert`, or `opts.default` when absent (null counts as
   * absent); without a default the setting is required. */
  get(key, convert, opts = {}) {
    this.read.add(key);
    const v = this.value[key];
    if (v === undefined || v === null) {
      if (!Object.hasOwn(opts, 'default')) fail(this.path, `missing field \`${key}\``);
      return opts.default;
    }
    return convert(v, join(this.path, key));
  }

  int(key, opts = {}) { return this.get(key, integer(opts), opts); }
  number(key, opts = {}) { return this.get(key, number, opts); }
  str(key, opts = {}) { return this.get(key, string, opts); }
  bool(key, opts = {}) { return this.get(key, boolean, opts); }
  choice(key, options, opts = {}) { return this.get(key, oneOf(options), opts); }

  /** A list whose items go through `item`. */
  list(key, item, opts = {}) {
    return this.get(key, (v, path) => {
      if (!Array.isArray(v)) fail(path, `expected a list, got ${show(v)}`);
      return v.map((x, i) => item(x, join(path, i)));
    }, opts);
  }

  /** An object of any keys whose values go through `item`. */
  map(key, item, opts = {}) {
    return this.get(key, (v, path) => {
      if (typeof v !== 'object' || Array.isArray(v)) fail(path, `expected a table, got ${show(v)}`);
      return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, item(x, join(path, k))]));
    }, opts);
  }

  /** A list of tables, each a Table to read (and `done()`) in turn. */
  tables(key, opts = {}) {
    return this.get(key, (v, path) => {
      if (!Array.isArray(v)) fail(path, `expected a list, got ${show(v)}`);
      return v.map((x, i) => {
        if (x === null || typeof x !== 'object' || Array.isArray(x)) fail(join(path, i), `expected a table, got ${show(x)}`);
        return new Table(x, join(path, i));
      });
    }, opts);
  }

  /** Fail on the first key no getter read: a typo is an error, not a default. */
  done() {
    for (const key of Object.keys(this.value)) {
      if (this.read.has(key)) continue;
      const known = [...this.read].sort().map((k) => `\`${k}\``).join(', ');
      fail(this.path, known ? `unknown field \`${key}\`, expected one of ${known}` : `unknown field \`${key}\``);
    }
  }
}
