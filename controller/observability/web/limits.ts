/**
 * PURE: how many live streams (Server-Sent Events) and log follows (each an SSH channel to a host)
 * the dashboard holds, in all and per viewer (a client address), so that no one viewer can take
 * them all. A slot is taken before the work starts and given back once (release is idempotent).
 */

export interface StreamCaps {
  /** Live streams at once, over all viewers. */
  streams: number;
  /** Live streams of one viewer (a browser opens one per tab). */
  streamsPerViewer: number;
  /** Log follows at once, over all viewers. */
  follows: number;
  /** Log follows of one viewer. */
  followsPerViewer: number;
}

export const DEFAULT_CAPS: StreamCaps = { streams: 64, streamsPerViewer: 12, follows: 8, followsPerViewer: 3 };

export type Slot =
  | { ok: true; release: () => void }
  /** 429: this viewer has its share; 503: everyone together has the lot. */
  | { ok: false; status: 429 | 503; message: string };

class Counter {
  private readonly byViewer = new Map<string, number>();
  total = 0;

  constructor(
    private readonly max: number,
    private readonly maxPerViewer: number,
    private readonly what: string,
  ) {}

  of(viewer: string): number {
    return this.byViewer.get(viewer) ?? 0;
  }

  take(viewer: string): Slot {
    const mine = this.of(viewer);
    if (mine >= this.maxPerViewer)
      return {
        ok: false,
        status: 429,
        message: `this viewer (${viewer}) has ${mine} ${this.what} open, the most one viewer may: close one and retry`,
      };
    if (this.total >= this.max)
      return {
        ok: false,
        status: 503,
        message: `the dashboard serves ${this.total} ${this.what} already, its most: retry later`,
      };
    this.byViewer.set(viewer, mine + 1);
    this.total++;
    let held = true;
    return {
      ok: true,
      release: () => {
        if (!held) return;
        held = false;
        this.total--;
        const left = this.of(viewer) - 1;
        if (left > 0) this.byViewer.set(viewer, left);
        else this.byViewer.delete(viewer);
      },
    };
  }
}

export class StreamLimits {
  private readonly streams: Counter;
  private readonly follows: Counter;

  constructor(readonly caps: StreamCaps = DEFAULT_CAPS) {
    this.streams = new Counter(caps.streams, caps.streamsPerViewer, 'live streams');
    this.follows = new Counter(caps.follows, caps.followsPerViewer, 'log follows');
  }

  takeStream(viewer: string): Slot {
    return this.streams.take(viewer);
  }

  takeFollow(viewer: string): Slot {
    return this.follows.take(viewer);
  }

  counts(viewer?: string): { streams: number; follows: number } {
    return viewer === undefined
      ? { streams: this.streams.total, follows: this.follows.total }
      : { streams: this.streams.of(viewer), follows: this.follows.of(viewer) };
  }
}
