/** Fails `configure`, `scale` or `place` with its message (the WIT `result`'s `err`). Name
 * what is wrong and where: the host shows the text in `check`, `plan` and its log. */
export class PolicyError extends Error {
  constructor(message) {
    super(message);
    this.name = 'PolicyError';
  }
}
