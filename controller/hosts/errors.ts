import { UgroError } from '../../config/errors.ts';

/** Why a host could not be used, phrased so a person can act on it. */
export class HostError extends UgroError {
  constructor(
    readonly host: string,
    readonly kind:
      | 'unreachable'
      | 'refused'
      | 'timeout'
      | 'auth'
      | 'hostkey-unknown'
      | 'hostkey-changed'
      | 'hostkey-revoked'
      | 'config'
      | 'channel'
      | 'port-busy'
      | 'other',
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`${host}: ${message}`, options);
  }
}
