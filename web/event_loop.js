// The one import of rlipv2_web.wasm outside wasm-bindgen: `turn` suspends the WebAssembly stack
// until the page's event loop has run a task (JSPI), so that WebGPU's promises (mapped buffers,
// finished work, error scopes) can settle while the synchronous Rust code waits for them. A
// MessageChannel task, not setTimeout: timers nested this deep are clamped to 4 ms.
const channel = new MessageChannel();
let waiting = [];
channel.port1.onmessage = () => {
  const wake = waiting;
  waiting = [];
  for (const resume of wake) resume();
};

function nextTask() {
  return new Promise((resume) => {
    waiting.push(resume);
    channel.port2.postMessage(0);
  });
}

export const turn =
  typeof WebAssembly.Suspending === "function"
    ? new WebAssembly.Suspending(nextTask)
    : () => {
        throw new Error("this browser lacks WebAssembly JSPI (WebAssembly.Suspending)");
      };
