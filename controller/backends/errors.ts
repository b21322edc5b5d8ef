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

/**
 * A host's answer could not be read (a tool printed what UGRO does not expect). About the host, not a bug;
 * a caller that knows the host names it (HostError, keeping this as the cause) or reports it as the host's state.
 */
export class HostOutputError extends UgroError {}
