/**
 * Time windows in a named IANA timezone. The wall clock is read through
 * Intl, which knows each zone's DST rules, so "08:00-18:00 Europe/Berlin"
 * follows the clock on the office wall on both sides of a DST change.
 * Formatters are built once per window (they are costly), never per request.
 */
const DAY_INDEX: Record<string, number> = { sun: 0, mon: 1, tue: 2, wed: 3, thu: 4, fri: 5, sat: 6 };
const SHORT_DAYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];

export interface TimeWindowSpec {
  days?: readonly string[];
  hours?: string;
  timezone: string;
}

export interface LocalTime {
  /** 0 = Sunday */
  day: number;
  /** minutes since local midnight */
  minutes: number;
}

export class TimeWindow {
  private readonly fmt: Intl.DateTimeFormat;
  private readonly days?: ReadonlySet<number>;
  private readonly from?: number;
  private readonly to?: number;
  /** the last minute checked: Intl is costly and the answer only changes by the minute */
  private cachedMinute = NaN;
  private cached?: { inside: boolean; detail: string };

  constructor(readonly spec: TimeWindowSpec) {
    try {
      this.fmt = new Intl.DateTimeFormat('en-US', { timeZone: spec.timezone, weekday: 'short', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });
    } catch {
      throw new Error(`${JSON.stringify(spec.timezone)} is not an IANA timezone`);
    }
    if (spec.days) {
      const set = new Set<number>();
      for (const d of spec.days) {
        const i = DAY_INDEX[d];
        if (i === undefined) throw new Error(`unknown day ${JSON.stringify(d)}`);
        set.add(i);
      }
      this.days = set;
    }
    if (spec.hours !== undefined) {
      const m = /^(\d\d):(\d\d)-(\d\d):(\d\d)$/.exec(spec.hours);
      if (!m) throw new Error(`hours ${JSON.stringify(spec.hours)} must look like 08:00-18:00`);
      this.from = Number(m[1]) * 60 + Number(m[2]);
      this.to = Number(m[3]) * 60 + Number(m[4]);
      if (!(this.from < this.to) || this.to > 24 * 60) throw new Error(`hours ${JSON.stringify(spec.hours)}: the window must end after it starts, within one day`);
    }
  }

  /** The wall-clock day and time in the window's timezone. */
  local(epochMs: number): LocalTime {
    let day = -1;
    let hour = 0;
    let minute = 0;
    for (const p of this.fmt.formatToParts(epochMs)) {
      if (p.type === 'weekday') day = DAY_INDEX[p.value.slice(0, 3).toLowerCase()] ?? -1;
      else if (p.type === 'hour') hour = Number(p.value);
      else if (p.type === 'minute') minute = Number(p.value);
    }
    if (day < 0 || !Number.isFinite(hour) || !Number.isFinite(minute)) throw new Error(`cannot read the local time in ${this.spec.timezone}`);
    return { day, minutes: (hour % 24) * 60 + minute };
  }

  /** [in the window, and a human description of the local time] */
  check(epochMs: number): { inside: boolean; detail: string } {
    // Every IANA offset is a whole number of minutes, so local time within one UTC minute is one answer.
    const minute = Math.floor(epochMs / 60_000);
    if (minute === this.cachedMinute) return this.cached!;
    const r = this.compute(epochMs);
    this.cachedMinute = minute;
    this.cached = r;
    return r;
  }

  private compute(epochMs: number): { inside: boolean; detail: string } {
    const t = this.local(epochMs);
    const hhmm = `${String(Math.floor(t.minutes / 60)).padStart(2, '0')}:${String(t.minutes % 60).padStart(2, '0')}`;
    const detail = `${SHORT_DAYS[t.day]} ${hhmm} ${this.spec.timezone}`;
    if (this.days && !this.days.has(t.day)) return { inside: false, detail };
    // from inclusive, to exclusive: 08:00-18:00 covers 08:00 up to 17:59
    if (this.from !== undefined && (t.minutes < this.from || t.minutes >= this.to!)) return { inside: false, detail };
    return { inside: true, detail };
  }
}
