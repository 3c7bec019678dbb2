// Starts the Go wasm client. Kept out of the HTML so pages work under a
// strict Content-Security-Policy (no inline scripts).
(async () => {
  const conn = document.getElementById("conn");
  try {
    const go = new Go();
    const { instance } = await WebAssembly.instantiateStreaming(
      fetch("/static/app.wasm"), go.importObject);
    go.run(instance);
  } catch (err) {
    if (conn) conn.textContent = "Client failed to load: " + err;
    console.error(err);
  }
})();
