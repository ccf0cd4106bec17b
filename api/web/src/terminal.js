// A terminal on a process's pty WebSocket (xterm.js; a chunk of its own, loaded on first use).
// Output arrives as binary messages (the last 64 KiB first); keystrokes go out as binary
// messages, a window size as the text message {"type": "resize", "cols", "rows"}.
import { Terminal } from '@xterm/xterm';
import { FitAddon } from '@xterm/addon-fit';
import { openSocket } from './api.js';

export function attachTerminal(el, path, onStatus, leave) {
  const term = new Terminal({ cursorBlink: true, convertEol: false, fontSize: 14, scrollback: 5000 });
  const fit = new FitAddon();
  term.loadAddon(fit);
  term.open(el);
  fit.fit();
  const encoder = new TextEncoder();
  let ws = null;
  let closed = false;
  const sendSize = () => {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: 'resize', cols: term.cols, rows: term.rows }));
  };
  const connect = () => {
    term.reset();
    onStatus('connecting');
    ws = openSocket(path);
    ws.onopen = () => {
      onStatus('live');
      sendSize();
      term.focus();
    };
    ws.onmessage = (m) => term.write(typeof m.data === 'string' ? m.data : new Uint8Array(m.data));
    ws.onclose = (e) => {
      if (!closed) onStatus(e.code === 1000 ? 'ended' : 'closed');
    };
  };
  // Escape twice in a row leaves the terminal (keyboard users are never trapped in it).
  let lastEscape = 0;
  term.attachCustomKeyEventHandler((e) => {
    if (e.type !== 'keydown' || e.key !== 'Escape') return true;
    const now = Date.now();
    if (now - lastEscape < 600) {
      lastEscape = 0;
      term.blur();
      if (leave) leave();
      return false;
    }
    lastEscape = now;
    return true;
  });
  term.onData((d) => ws && ws.readyState === WebSocket.OPEN && ws.send(encoder.encode(d)));
  term.onBinary((d) => {
    const bytes = new Uint8Array(d.length);
    for (let i = 0; i < d.length; i++) bytes[i] = d.charCodeAt(i) & 0xff;
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(bytes);
  });
  term.onResize(sendSize);
  const ro = new ResizeObserver(() => fit.fit());
  ro.observe(el);
  connect();
  return {
    reconnect: connect,
    dispose() {
      closed = true;
      ro.disconnect();
      if (ws) ws.close();
      term.dispose();
    },
  };
}
