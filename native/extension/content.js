// cardgate extension, bridge (isolated world): page.js <-> background.js.
// The page's origin is not taken from here: the background reads it from
// the port's sender, which the browser fills in.
(() => {
  "use strict";
  const TO_EXT = "cardgate:page->ext";
  const TO_PAGE = "cardgate:ext->page";
  let port = null;
  const connect = () => {
    port = chrome.runtime.connect({ name: "cardgate" });
    port.onMessage.addListener((msg) => window.postMessage({ tag: TO_PAGE, msg }, "*"));
    port.onDisconnect.addListener(() => {
      port = null;
    });
  };
  window.addEventListener("message", (ev) => {
    if (ev.source !== window || !ev.data || ev.data.tag !== TO_EXT) return;
    if (!port) connect();
    port.postMessage(ev.data.msg);
  });
})();
