// The frame code of omnicli/media/framecode.py, in the browser: a 32 x 4 grid of black
// or white cells along the top of a frame carrying a counter and the sender's clock.
//
//   bits   0..15   sync pattern 0xA5C3
//   bits  16..47   frame counter, uint32
//   bits  48..95   timestamp in milliseconds, uint48 (the wall clock)
//   bits  96..127  CRC-32 of the 10 payload bytes
//
// Cells are `max(4, floor(width / 32))` pixels square, bits left to right, top row
// first, most significant bit first; the reader averages the middle half of each cell.
//
// The page's clock is `performance.timeOrigin + performance.now()` (ms since the Unix
// epoch, the clock rVFC metadata is given in); the benchmark checks its offset from
// Python's `time.time()` over the DevTools protocol.
"use strict";

const FrameCode = (() => {
  const COLUMNS = 32;
  const ROWS = 4;
  const BITS = COLUMNS * ROWS;
  const SYNC = 0xa5c3;
  const MIN_CELL = 4;
  const TS_MOD = 2 ** 48;
  const COUNTER_MOD = 2 ** 32;

  const CRC_TABLE = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    CRC_TABLE[n] = c >>> 0;
  }

  function crc32(bytes) {
    let c = 0xffffffff;
    for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  }

  function cellSize(width) {
    return Math.max(MIN_CELL, Math.floor(width / COLUMNS));
  }

  function clock() {
    return performance.timeOrigin + performance.now();
  }

  // big-endian bytes of a non-negative integer below 2 ** 53
  function bytesOf(value, count) {
    const out = [];
    for (let i = 0; i < count; i++) {
      out.unshift(value % 256);
      value = Math.floor(value / 256);
    }
    return out;
  }

  function valueOf(bytes) {
    return bytes.reduce((acc, b) => acc * 256 + b, 0);
  }

  function encodeBits(counter, tsMs) {
    const payload = [...bytesOf(counter % COUNTER_MOD, 4), ...bytesOf(tsMs % TS_MOD, 6)];
    const word = [...bytesOf(SYNC, 2), ...payload, ...bytesOf(crc32(payload), 4)];
    const bits = [];
    for (const byte of word) for (let i = 7; i >= 0; i--) bits.push((byte >> i) & 1);
    return bits;
  }

  function decodeBits(bits) {
    const word = [];
    for (let i = 0; i < BITS; i += 8) {
      let byte = 0;
      for (let j = 0; j < 8; j++) byte = (byte << 1) | bits[i + j];
      word.push(byte);
    }
    if (valueOf(word.slice(0, 2)) !== SYNC) return null;
    const payload = word.slice(2, 12);
    if (crc32(payload) !== valueOf(word.slice(12, 16))) return null;
    return { counter: valueOf(payload.slice(0, 4)), tsMs: valueOf(payload.slice(4)) };
  }

  // Draw the code for (counter, tsMs) into the top strip of a 2D context `width` wide.
  function stamp(ctx, width, counter, tsMs) {
    const cell = cellSize(width);
    encodeBits(counter, tsMs).forEach((bit, i) => {
      ctx.fillStyle = bit ? "#fff" : "#000";
      ctx.fillRect((i % COLUMNS) * cell, Math.floor(i / COLUMNS) * cell, cell, cell);
    });
  }

  // {counter, tsMs} from the RGBA pixels of the strip (an ImageData at least
  // 32 * cell x 4 * cell), or null when they carry no code.
  function read(image, cell) {
    const lo = Math.floor(cell / 4);
    const hi = cell - lo;
    const bits = [];
    for (let row = 0; row < ROWS; row++) {
      for (let col = 0; col < COLUMNS; col++) {
        let sum = 0;
        let count = 0;
        for (let y = row * cell + lo; y < row * cell + hi; y++) {
          let p = 4 * (y * image.width + col * cell + lo);
          for (let x = lo; x < hi; x++, p += 4) {
            sum += image.data[p] + image.data[p + 1] + image.data[p + 2];
            count += 3;
          }
        }
        bits.push(sum / count >= 128 ? 1 : 0);
      }
    }
    return decodeBits(bits);
  }

  // A canvas of width x height drawing colour bars, a moving bar and the frame code at
  // `fps` frames per second on the wall clock; its captured video track.
  function source(width, height, fps) {
    const canvas = document.createElement("canvas");
    canvas.width = width;
    canvas.height = height;
    canvas.style.width = "160px";
    document.body.appendChild(canvas);
    const ctx = canvas.getContext("2d");
    const track = canvas.captureStream(0).getVideoTracks()[0];
    const colours = ["#c0c0c0", "#c0c000", "#00c0c0", "#00c000",
                     "#c000c0", "#c00000", "#0000c0", "#101010"];
    const bar = Math.max(4, Math.floor(width / 16));
    const state = { sent: 0, late: 0 };
    const t0 = clock();
    function draw() {
      const counter = state.sent;
      colours.forEach((colour, i) => {
        ctx.fillStyle = colour;
        const x0 = Math.floor((i * width) / 8);
        ctx.fillRect(x0, 0, Math.floor(((i + 1) * width) / 8) - x0, height);
      });
      const x = (Math.floor((counter * width) / (2 * fps)) % (width + bar)) - bar;
      ctx.fillStyle = "#fff";
      ctx.fillRect(x, 0, bar, height);
      stamp(ctx, width, counter, Math.floor(clock()));
      track.requestFrame();
      state.sent++;
      // the next frame on the schedule t0 + n / fps; a late one is drawn at once
      const wait = t0 + (state.sent * 1000) / fps - clock();
      if (wait < 0) state.late++;
      if (track.readyState === "live") setTimeout(draw, Math.max(0, wait));
    }
    draw();
    return { track, state };
  }

  // Read the code of every frame `video` shows (requestVideoFrameCallback); `onCode`
  // gets ({counter, tsMs} or null, the page's clock when read, the frame's metadata).
  function reader(video, onCode) {
    const canvas = document.createElement("canvas");
    const ctx = canvas.getContext("2d", { willReadFrequently: true });
    function step(now, meta) {
      const cell = cellSize(meta.width);
      const w = COLUMNS * cell;
      const h = ROWS * cell;
      let code = null;
      if (meta.width >= w && meta.height >= h) {
        if (canvas.width !== w || canvas.height !== h) {
          canvas.width = w;
          canvas.height = h;
        }
        ctx.drawImage(video, 0, 0, w, h, 0, 0, w, h);
        code = read(ctx.getImageData(0, 0, w, h), cell);
      }
      onCode(code, clock(), meta);
      video.requestVideoFrameCallback(step);
    }
    video.requestVideoFrameCallback(step);
  }

  return { cellSize, clock, crc32, encodeBits, decodeBits, stamp, read, source, reader };
})();
