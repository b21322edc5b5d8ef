/**
 * loop/host-state.ts: a host's live parts changing tells the controller (which drops its cached
 * placement plan). The sweep bench showed why: a paused trial's host, seen free after its stop,
 * stayed "busy" in the cached plan until the next lease renewal, so new trials waited 5-15 s.
 */
import { describe, expect, it } from 'vitest';
import { HostState } from '../../controller/loop/host-state.ts';
import { run } from './job-fixtures.ts';

describe('HostState liveChanged', () => {
  it('fires when a live part ends, is dropped or starts; not when nothing live changed', () => {
    let n = 0;
    const hs = new HostState('me', () => n++);
    const r = run('a', 'abcd1234', 1, ['gpu1'], { createdAt: '2026-01-01T00:00:00Z' });
    const s = run('b', 'abcd1234', 1, ['gpu1'], { createdAt: '2026-01-01T00:00:00Z' });
    hs.set('gpu1', [r.part('gpu1')]);
    expect(n).toBe(1); // started
    hs.set('gpu1', [r.part('gpu1')]);
    hs.set('gpu1', [r.part('gpu1')], 'a');
    expect(n).toBe(1); // the same live parts
    hs.put(s.part('gpu1', { exit: 0 }));
    expect(n).toBe(1); // an ended part added: nothing live changed
    hs.set('gpu1', [r.part('gpu1', { exit: 143 })], 'a');
    expect(n).toBe(2); // a's run stopped
    hs.put(s.part('gpu1'));
    expect(n).toBe(3);
    hs.drop('gpu1', s.dir);
    expect(n).toBe(4);
  });
});
