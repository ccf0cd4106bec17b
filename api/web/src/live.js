// Event streams that survive network drops: each remembers the position of the last event it
// handed on and reconnects with ?after=POSITION, so no event is lost or repeated.
import { openSocket } from './api.js';

// path(after) -> the socket's path; position(ev) -> its seq or cursor; contiguous: positions
// go 1, 2, 3 … without gaps (a run's or a process's seq), so a gap means a lost message and a
// reconnect; final(ev): the stream ends after it.
export class ResumableStream {
  constructor({ path, position, contiguous = false, final = () => false, onEvent, onStatus, after = 0 }) {
    Object.assign(this, { path, position, contiguous, final, onEvent, onStatus: onStatus || (() => {}) });
    this.last = after;
    this.stopped = false;
    this.done = false;
    this.delay = 250;
    this.connects = 0;
  }

  start() {
    this.stopped = false;
    this.connect();
    return this;
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close();
  }

  connect() {
    if (this.stopped || this.done) return;
    this.connects++;
    this.onStatus(this.connects > 1 ? 'reconnecting' : 'connecting');
    const ws = (this.ws = openSocket(this.path(this.last)));
    ws.onopen = () => {
      this.delay = 250;
      this.onStatus('live');
    };
    ws.onmessage = (m) => {
      if (ws !== this.ws) return;
      let ev;
      try {
        ev = JSON.parse(typeof m.data === 'string' ? m.data : new TextDecoder().decode(m.data));
      } catch {
        return;
      }
      if (ev.type === 'overflow') {
        // The daemon dropped what it had queued; it says where to resume.
        if (typeof ev.resume_after === 'number') this.last = Math.max(this.last, ev.resume_after);
        return;
      }
      const pos = this.position(ev);
      if (typeof pos !== 'number' || pos <= this.last) return; // already handed on
      if (this.contiguous && pos !== this.last + 1) {
        ws.close(4001, 'gap');
        return;
      }
      this.last = pos;
      this.onEvent(ev);
      if (this.final(ev)) {
        this.done = true;
        this.onStatus('ended');
      }
    };
    ws.onclose = () => {
      if (ws !== this.ws) return;
      if (this.stopped || this.done) return;
      this.onStatus('reconnecting');
      this.timer = setTimeout(() => this.connect(), this.delay);
      this.delay = Math.min(this.delay * 2, 5000);
    };
  }
}
