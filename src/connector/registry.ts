/**
 * Live channels per connector group, and the choice of one for each request:
 * the connector with the fewest requests in flight (or the next one, round-robin),
 * never a channel that is draining, not yet configured or missing pings.
 */
import type { ClientHttp2Session } from 'node:http2';
import type { ChannelTransport } from './channelLink.js';
import type { StreamWindows } from './streamWindow.js';

export type Balancing = 'least-inflight' | 'round-robin';

export interface Channel {
  readonly key: string;
  readonly connectorId: string;
  readonly group: string;
  readonly version: string;
  readonly address: string;
  /** what carries the channel: HTTP/2 straight on TLS, or over a WebSocket */
  readonly transport: ChannelTransport;
  /** when the connector's newest certificate expires (a renewal moves it); the channel is closed then */
  certExpiry: Date;
  readonly session: ClientHttp2Session;
  readonly openedAt: number;
  /** requests running on it: an upstream request from its tunnel connection to the end of the app's answer, an upgraded connection while open */
  inflight: number;
  /** sizes the session's stream window by its open streams: each tunnel stream is tracked in it */
  readonly windows: StreamWindows;
  /** tunnel streams open on it, kept-alive idle ones included (the ones `windows` counts) */
  readonly streams: number;
  lastSeen: number;
  /** the connector acknowledged its target list */
  ready: boolean;
  /** the target list last sent on this channel (JSON), to send a changed one only */
  sentTargets?: string;
  /** the connector said goodbye (GOAWAY): no new streams */
  draining: boolean;
  missedPings: number;
  /** cuts the channel at once (revocation, missed pings) */
  terminate(): void;
}

export interface ConnectorSummary {
  id: string;
  group: string;
  version: string;
  address: string;
  transport: ChannelTransport;
  channels: number;
  inflight: number;
  lastSeen: string;
  certExpiry: string;
  draining: boolean;
  /** false for a connector whose last channel closed, kept in the listing for a while (channels and inflight 0) */
  active: boolean;
}

/**
 * How long a connector whose last channel closed stays listed, as inactive, after it was last
 * seen: Entra application proxy shows such a connector as inactive and removes it after 10 days.
 */
export const INACTIVE_KEPT_MS = 10 * 24 * 3600_000;
/** at most this many are remembered, the longest gone forgotten first: connectors enrolled and dropped in a loop must not grow the gateway */
export const INACTIVE_KEPT_MAX = 5000;

/**
 * A group that had a live connector this recently is expected to get one back: the gateway
 * restarted, or its connectors restart (an upgrade) or lost their connection and are redialling.
 * A request for it waits for one (COMEBACK_WAIT_MS) instead of getting a 504 at once.
 */
export const COMEBACK_WINDOW_MS = 60_000;
/** the longest a request waits for a connector of its group to come back (also bounded by the app's backendTimeout) */
export const COMEBACK_WAIT_MS = 10_000;

/** live connectors and their open channels in one connector group */
export interface GroupCounts {
  connectors: number;
  channels: number;
}

/**
 * how a request's wait for a connector ended: a channel came, none came in time, the wait was
 * called off (a stop, a revocation), or its client left
 */
export type WaitOutcome = 'served' | 'timeout' | 'released' | 'abandoned';

export class ChannelRegistry {
  private readonly byGroup = new Map<string, Channel[]>();
  private rr = new Map<string, number>();
  balancing = new Map<string, Balancing>();
  /** the last summary of each connector whose last channel closed, in the order they went */
  private readonly inactive = new Map<string, ConnectorSummary>();
  /** the latest last seen of the closed channels of connectors that still hold one */
  private readonly closedSeen = new Map<string, number>();

  /** told when a channel is added or removed (the saved listing follows it) */
  onChange?: () => void;
  /** whether a connector may connect again (the hub: not revoked); one that may not is not waited for */
  mayReturn: (connectorId: string) => boolean = () => true;
  /** told how each wait of pickOrWait ended (drawbridge_connector_waits_total) */
  onWaitEnded?: (group: string, outcome: WaitOutcome) => void;
  /** the gateway is stopping: no request waits for a connector (stopWaiting) */
  private noWaiting = false;
  /** requests waiting for a usable channel, per group (pickOrWait) */
  private readonly waiting = new Map<string, Set<(release?: boolean) => void>>();

  constructor(private readonly keep = { ms: INACTIVE_KEPT_MS, max: INACTIVE_KEPT_MAX }) {}

  /** Connectors of an earlier run (knownConnectors.ts), listed as inactive until they connect. */
  restore(gone: readonly ConnectorSummary[]): void {
    for (const s of gone) if (!this.channelsOf(s.id)) this.remember(s);
  }

  add(ch: Channel): void {
    this.inactive.delete(ch.connectorId);
    const list = this.byGroup.get(ch.group) ?? [];
    list.push(ch);
    this.byGroup.set(ch.group, list);
    this.onChange?.();
  }

  remove(ch: Channel): void {
    const list = this.byGroup.get(ch.group);
    if (!list) return;
    const i = list.indexOf(ch);
    if (i < 0) return;
    const last = summarize(list.filter((c) => c.connectorId === ch.connectorId))[0]!;
    list.splice(i, 1);
    if (list.length === 0) this.byGroup.delete(ch.group);
    this.onChange?.();
    // Its channels close one by one: the last seen is the latest of them all, not of the last one closed.
    const seen = Math.max(Date.parse(last.lastSeen), this.closedSeen.get(ch.connectorId) ?? 0);
    if (last.channels > 1) return void this.closedSeen.set(ch.connectorId, seen);
    this.closedSeen.delete(ch.connectorId);
    this.remember({ ...last, lastSeen: new Date(seen).toISOString() });
  }

  /** A connector's last channel closed: it is listed as inactive until it connects again or is forgotten. */
  private remember(last: ConnectorSummary): void {
    this.inactive.delete(last.id);
    this.inactive.set(last.id, { ...last, channels: 0, inflight: 0, draining: false, active: false });
    for (const id of this.inactive.keys()) {
      if (this.inactive.size <= this.keep.max) break;
      this.inactive.delete(id);
    }
  }

  /** Live connectors and open channels in each of `groups` (0 and 0 for a group with none). */
  groupCounts(groups: Iterable<string>): Map<string, GroupCounts> {
    const out = new Map<string, GroupCounts>();
    for (const g of groups) {
      const list = this.byGroup.get(g) ?? [];
      out.set(g, { connectors: new Set(list.map((c) => c.connectorId)).size, channels: list.length });
    }
    return out;
  }

  /** how many channels the connector holds, in any state */
  channelsOf(connectorId: string): number {
    let n = 0;
    for (const c of this.all()) if (c.connectorId === connectorId) n++;
    return n;
  }

  all(): Channel[] {
    return [...this.byGroup.values()].flat();
  }

  usable(ch: Channel): boolean {
    return open(ch) && ch.missedPings === 0;
  }

  /**
   * A channel for a new request. `avoid` names a connector that just failed:
   * another connector is preferred, the same one is used only if it is alone.
   * The choice is between connectors (a connector with more channels gets no
   * larger share), then between that connector's channels by in-flight load.
   */
  pick(group: string, avoid?: string): Channel | undefined {
    const list = this.byGroup.get(group) ?? [];
    // A connector closes its sessions gracefully only when it drains, and then all of them: a
    // GOAWAY seen on one of its channels is on its way on the others. The retry of a stream it
    // refused took its other channel, whose GOAWAY had not arrived yet, and was refused too (502).
    let draining: Set<string> | undefined;
    for (const c of list) if (c.draining) (draining ??= new Set()).add(c.connectorId);
    const candidates = list.filter((c) => open(c) && !draining?.has(c.connectorId));
    // A late ping on a busy machine must not empty the group: channels that
    // missed one are used only when no channel is fully healthy.
    const healthy = candidates.filter((c) => c.missedPings === 0);
    const live = healthy.length ? healthy : candidates;
    if (live.length === 0) return undefined;
    const others = avoid ? live.filter((c) => c.connectorId !== avoid) : live;
    const pool = others.length ? others : live;
    if (pool.length === 1) return pool[0];
    // in-flight requests per connector, in the order the connectors' channels were added
    const load = new Map<string, number>();
    for (const c of pool) load.set(c.connectorId, (load.get(c.connectorId) ?? 0) + c.inflight);
    const ids = [...load.keys()];
    const turn = (this.rr.get(group) ?? 0) % ids.length;
    this.rr.set(group, turn + 1);
    let connector = ids[turn]!;
    if (this.balancing.get(group) !== 'round-robin') {
      // the least loaded; among equals (an idle group) the turn goes round, not always to the first
      for (let i = 1; i < ids.length; i++) {
        const id = ids[(turn + i) % ids.length]!;
        if (load.get(id)! < load.get(connector)!) connector = id;
      }
    }
    let best: Channel | undefined;
    for (const c of pool) if (c.connectorId === connector && (!best || c.inflight < best.inflight)) best = c;
    return best;
  }

  /**
   * A channel for a new request as pick() chooses it, or, when the group has none usable but
   * expects one back (expectsBack), the first that becomes usable within `ms`. A restart of the
   * gateway or of a group's only connector was a burst of 504s for the second or two until the
   * channels were back; now those requests wait that long. Undefined when none came.
   * `whenGone` is handed the call that ends the wait when the request's client leaves.
   */
  pickOrWait(group: string, avoid: string | undefined, ms: number, whenGone?: (cancel: () => void) => void): Promise<Channel | undefined> | Channel | undefined {
    const now = this.pick(group, avoid);
    if (now || ms <= 0 || this.noWaiting || !this.expectsBack(group)) return now;
    return new Promise((resolve) => {
      const waiters = this.waiting.get(group) ?? new Set<(release?: boolean) => void>();
      this.waiting.set(group, waiters);
      let settled = false;
      const done = (ch: Channel | undefined, outcome: WaitOutcome) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        waiters.delete(check);
        if (waiters.size === 0 && this.waiting.get(group) === waiters) this.waiting.delete(group);
        this.onWaitEnded?.(group, outcome);
        resolve(ch);
      };
      const check = (release?: boolean) => {
        const ch = release ? undefined : this.pick(group, avoid);
        if (ch) done(ch, 'served');
        else if (release) done(undefined, 'released');
      };
      const timer = setTimeout(() => done(undefined, 'timeout'), ms);
      waiters.add(check);
      // A client that left ends its wait now: it held the request's closure for up to 10 s, and
      // was counted as served or timed out for a request nobody was waiting for.
      whenGone?.(() => done(undefined, 'abandoned'));
    });
  }

  /** A channel of the group became usable (the connector acknowledged its targets): waiting requests go on. */
  channelReady(group: string): void {
    for (const check of [...(this.waiting.get(group) ?? [])]) check();
  }

  /**
   * What expectsBack depends on changed (a reload revoked connectors): the requests waiting for a
   * group that no longer expects a connector get their 504 now, where they waited out the 10 s
   * for one that cannot connect again.
   */
  recheckWaiting(): void {
    for (const [group, waiters] of [...this.waiting]) if (!this.expectsBack(group)) for (const check of [...waiters]) check(true);
  }

  /**
   * The gateway stops: waiting requests get their 504 now and new ones do not wait (the
   * connectors come back to the next gateway, not this one), where they held its drain.
   */
  stopWaiting(): void {
    this.noWaiting = true;
    for (const waiters of [...this.waiting.values()]) for (const check of [...waiters]) check(true);
  }

  /**
   * Whether a connector of the group is likely to be usable soon: one holds a channel not usable
   * yet (its targets not acknowledged, draining, pings missed), or one was last seen less than
   * COMEBACK_WINDOW_MS ago (a restored listing counts: a gateway restart). Not one that is revoked
   * or whose certificate has run out: it cannot connect again.
   */
  expectsBack(group: string, now = Date.now()): boolean {
    const returns = (id: string, certExpiry: number) => certExpiry > now && this.mayReturn(id);
    for (const c of this.byGroup.get(group) ?? []) if (returns(c.connectorId, c.certExpiry.getTime())) return true;
    for (const s of this.inactive.values()) {
      if (s.group === group && now - Date.parse(s.lastSeen) < COMEBACK_WINDOW_MS && returns(s.id, Date.parse(s.certExpiry))) return true;
    }
    return false;
  }

  /** The live connectors and, as inactive, those whose last channel closed and that were last seen less than `keep.ms` ago. */
  summary(now = Date.now()): ConnectorSummary[] {
    for (const [id, s] of this.inactive) if (now - Date.parse(s.lastSeen) >= this.keep.ms) this.inactive.delete(id);
    return [...summarize(this.all()), ...this.inactive.values()].sort((a, b) => a.group.localeCompare(b.group) || a.id.localeCompare(b.id));
  }
}

/** One summary per connector of these channels, in the order their first channels come. */
function summarize(channels: Channel[]): ConnectorSummary[] {
  const out = new Map<string, ConnectorSummary>();
  for (const c of channels) {
    const s = out.get(c.connectorId) ?? {
      id: c.connectorId,
      group: c.group,
      version: c.version,
      address: c.address,
      transport: c.transport,
      channels: 0,
      inflight: 0,
      lastSeen: new Date(c.lastSeen).toISOString(),
      certExpiry: c.certExpiry.toISOString(),
      draining: false,
      active: true,
    };
    s.channels++;
    s.inflight += c.inflight;
    if (c.lastSeen > Date.parse(s.lastSeen)) s.lastSeen = new Date(c.lastSeen).toISOString();
    if (c.certExpiry.getTime() > Date.parse(s.certExpiry)) s.certExpiry = c.certExpiry.toISOString();
    s.draining ||= c.draining;
    out.set(c.connectorId, s);
  }
  return [...out.values()];
}

/**
 * A channel that may take new work, pings aside: ready, not draining, its session alive, its
 * certificate not expired (between the expiry and the timer that closes it).
 */
function open(ch: Channel): boolean {
  return ch.ready && !ch.draining && !ch.session.closed && !ch.session.destroyed && ch.certExpiry.getTime() > Date.now();
}
