// Live updates from the websocket /api/events (Mailpit's events), reconnecting with backoff.

export class LiveEvents {
  /**
   * @param {(event: {Type: string, Data: any}) => void} onEvent
   * @param {(state: "connecting"|"live"|"offline", reconnected: boolean) => void} onState
   */
  constructor(onEvent, onState) {
    this.onEvent = onEvent;
    this.onState = onState;
    this.delay = 500;
    this.connectedBefore = false;
    this.socket = null;
    this.timer = null;
  }

  start() {
    const url = new URL("api/events", document.baseURI);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    this.onState("connecting", false);
    let socket;
    try {
      socket = new WebSocket(url);
    } catch {
      this.retry();
      return;
    }
    this.socket = socket;
    socket.addEventListener("open", () => {
      this.delay = 500;
      this.onState("live", this.connectedBefore);
      this.connectedBefore = true;
    });
    socket.addEventListener("message", (message) => {
      let event;
      try {
        event = JSON.parse(message.data);
      } catch {
        return;
      }
      if (event && typeof event.Type === "string") this.onEvent(event);
    });
    socket.addEventListener("close", () => {
      if (this.socket !== socket) return;
      this.socket = null;
      this.onState("offline", false);
      this.retry();
    });
  }

  retry() {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.start(), this.delay);
    this.delay = Math.min(this.delay * 2, 10000);
  }
}
