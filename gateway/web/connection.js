// One WebSocket to the gateway that served this page, kept open: requests matched to their replies
// by requestId, pushed events handed on, and reconnection with backoff and jitter when the network
// or the gateway goes away (docs/protocol.md, "Close codes").

const REPLY_TIMEOUT_MS = 15000; // longer than the gateway's own 10 s, so its TIMEOUT arrives first
const FIRST_RETRY_MS = 500;
const MAX_RETRY_MS = 15000;

/** Close codes after which reconnecting would only repeat the fault. */
function meansStop(code) {
  return code === 1008 || (code >= 4500 && code <= 4999);
}

/**
 * The socket, as an EventTarget:
 * - `state` (detail: {state, retryInMs}): `connecting`, `open`, `waiting` (to reconnect), `stopped`;
 * - `open`: a new socket is open (the session must be resumed on it);
 * - `event` (detail: frame): a frame that answers no request of ours.
 */
export class Connection extends EventTarget {
  constructor(url) {
    super();
    this.url = url;
    this.socket = null;
    this.pending = new Map();
    this.nextId = 1;
    this.failures = 0;
    this.retryTimer = null;
    this.state = 'connecting';
    window.addEventListener('online', () => this.reconnectNow());
  }

  start() {
    this.open();
  }

  /** Reconnects at once if waiting (the browser says the network is back, or the user asked). */
  reconnectNow() {
    if (this.state !== 'waiting') return;
    clearTimeout(this.retryTimer);
    this.open();
  }

  open() {
    this.setState('connecting');
    let socket;
    try {
      socket = new WebSocket(this.url);
    } catch {
      this.scheduleRetry();
      return;
    }
    this.socket = socket;
    socket.addEventListener('open', () => {
      this.failures = 0;
      this.setState('open');
      this.dispatchEvent(new Event('open'));
    });
    socket.addEventListener('message', (event) => this.receive(event.data));
    socket.addEventListener('close', (event) => this.closed(socket, event.code));
  }

  receive(data) {
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      return;
    }
    if (!frame || typeof frame !== 'object') return;
    const waiting = frame.requestId !== undefined && this.pending.get(frame.requestId);
    if (waiting) {
      this.pending.delete(frame.requestId);
      clearTimeout(waiting.timer);
      waiting.resolve(frame);
    } else {
      // An event, or a reply that came after its TIMEOUT: handed on.
      this.dispatchEvent(new CustomEvent('event', {detail: frame}));
    }
  }

  closed(socket, code) {
    if (socket !== this.socket) return;
    this.socket = null;
    for (const [, waiting] of this.pending) {
      clearTimeout(waiting.timer);
      waiting.resolve({
        rocketStatus: 'DISCONNECTED',
        message: 'The connection was lost before the answer came.',
      });
    }
    this.pending.clear();
    if (meansStop(code)) {
      this.setState('stopped', {code});
      return;
    }
    this.scheduleRetry();
  }

  /** Full jitter over an exponential backoff, so clients of a restarted gateway spread out. */
  scheduleRetry() {
    const ceiling = Math.min(MAX_RETRY_MS, FIRST_RETRY_MS * 2 ** this.failures);
    const delay = Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
    this.failures += 1;
    this.setState('waiting', {retryInMs: delay});
    this.retryTimer = setTimeout(() => this.open(), delay);
  }

  setState(state, extra = {}) {
    this.state = state;
    this.dispatchEvent(new CustomEvent('state', {detail: {state, ...extra}}));
  }

  get isOpen() {
    return this.socket !== null && this.socket.readyState === WebSocket.OPEN;
  }

  /**
   * Sends `{action, ...payload}` and resolves with its reply, whatever its status; never rejects.
   * When the socket is not open, resolves at once with `DISCONNECTED`.
   */
  request(action, payload = {}) {
    if (!this.isOpen) {
      return Promise.resolve({
        rocketStatus: 'DISCONNECTED',
        message: 'Not connected to the server; trying again shortly.',
      });
    }
    const requestId = `c${this.nextId++}`;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.pending.delete(requestId);
        resolve({rocketStatus: 'TIMEOUT', message: 'No answer from the server in time.'});
      }, REPLY_TIMEOUT_MS);
      this.pending.set(requestId, {resolve, timer});
      this.socket.send(JSON.stringify({...payload, action, requestId}));
    });
  }
}

/** The WebSocket address of the server that served this page. */
export function serverUrl() {
  const scheme = window.location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${window.location.host}/`;
}
