// The browser phone: one RTCPeerConnection per page, negotiated once on the console's
// WebSocket when she turns the phone on; each call is then bridged into it by the server,
// so answering costs no handshake. Rings, answers and hang-ups are JSON messages on the
// same socket (docs/API.md). What the page hears is measured with Web Audio
// (`phoneHears()`), for the tests and for the level meter.
"use strict";

const phone = { pc: null, mic: null, ring: null, call: null, muted: false, held: false, outgoing: false,
                audio: null, analyser: null, socket: null };

function phoneSend(message) {
  if (phone.socket && phone.socket.readyState === WebSocket.OPEN) phone.socket.send(JSON.stringify(message));
}

function phoneState(text) { $("phone-state").textContent = text; }

function phoneRender() {
  const on = phone.pc !== null;
  $("phone-on").hidden = on;
  $("phone-off").hidden = !on;
  $("phone-ring").hidden = phone.ring === null;
  $("phone-call").hidden = phone.call === null;
  $("phone-mute").textContent = phone.muted ? "Réactiver le micro" : "Couper le micro";
  $("phone-hold").textContent = phone.held ? "Reprendre l'appelant" : "Mettre en attente";
  // Her own call to a customer (from a task): nobody waits on hold for her.
  $("phone-hold").hidden = phone.outgoing;
  $("phone-answer").textContent = phone.outgoing ? "Décrocher et appeler" : "Répondre";
  $("phone-decline").textContent = phone.outgoing ? "Annuler" : "Refuser";
}

// ICE gathering finished, or 2 s passed (the server is ICE-lite: our candidates only
// need to be in the offer, it answers our checks).
function gathered(pc) {
  return new Promise((resolve) => {
    if (pc.iceGatheringState === "complete") return resolve();
    const timer = setTimeout(resolve, 2000);
    pc.addEventListener("icegatheringstatechange", () => {
      if (pc.iceGatheringState === "complete") { clearTimeout(timer); resolve(); }
    });
  });
}

// The far end's audio: played through Web Audio (Chromium feeds a remote stream to Web
// Audio only while a media element plays it, hence the muted <audio>).
function phoneHear(stream) {
  const element = $("phone-audio");
  element.srcObject = stream;
  element.muted = true;
  element.play().catch(() => {});
  if (!phone.audio) phone.audio = new AudioContext();
  phone.audio.resume().catch(() => {});
  const source = phone.audio.createMediaStreamSource(stream);
  phone.analyser = phone.audio.createAnalyser();
  phone.analyser.fftSize = 8192;
  source.connect(phone.analyser);
  source.connect(phone.audio.destination);
}

// The loudest frequency she hears now, and its level (dB); null before any audio.
function phoneHears() {
  if (!phone.analyser) return null;
  const bins = new Float32Array(phone.analyser.frequencyBinCount);
  phone.analyser.getFloatFrequencyData(bins);
  let best = 0;
  for (let i = 1; i < bins.length; i++) if (bins[i] > bins[best]) best = i;
  return { hz: best * phone.audio.sampleRate / phone.analyser.fftSize, db: bins[best] };
}
window.phoneHears = phoneHears;

async function phoneOn() {
  if (!phone.socket) return;
  phoneState("micro…");
  try {
    phone.mic = await navigator.mediaDevices.getUserMedia({ audio: true });
  } catch (e) {
    phoneState("micro refusé");
    return;
  }
  const pc = new RTCPeerConnection({ bundlePolicy: "max-bundle", rtcpMuxPolicy: "require" });
  phone.pc = pc;
  pc.addTrack(phone.mic.getAudioTracks()[0], phone.mic);
  pc.ontrack = (e) => phoneHear(e.streams[0] || new MediaStream([e.track]));
  pc.onconnectionstatechange = () => {
    if (phone.pc !== pc) return;
    if (pc.connectionState === "failed" || pc.connectionState === "closed") phoneOff(false);
  };
  await pc.setLocalDescription(await pc.createOffer());
  await gathered(pc);
  phoneState("connexion…");
  phoneSend({ type: "phone-on", sdp: pc.localDescription.sdp });
  phoneRender();
}

function phoneOff(tell) {
  if (tell) phoneSend({ type: "phone-off" });
  if (phone.pc) phone.pc.close();
  if (phone.mic) phone.mic.getTracks().forEach((t) => t.stop());
  phone.pc = null; phone.mic = null; phone.ring = null; phone.call = null;
  phone.muted = false; phone.held = false;
  phoneState("éteint");
  phoneRender();
}

// Messages about the phone on the console's socket (console.js hands them over).
function phoneMessage(message) {
  switch (message.type) {
    case "phone-answer":
      if (phone.pc) phone.pc.setRemoteDescription({ type: "answer", sdp: message.sdp })
        .catch(() => phoneOff(true));
      break;
    case "phone-error": phoneOff(false); phoneState("refusé : " + message.error); break;
    case "phone":
      if (message.state === "connected") phoneState("prêt");
      else if (phone.pc) { phoneOff(false); phoneState("coupé"); }
      break;
    case "ring":
      // A call she placed from a task rings her first: the card says it is her own call
      // to the customer, not a caller for a company.
      phone.ring = message.ring;
      phone.outgoing = message.outgoing === true;
      $("phone-ring-kind").textContent = phone.outgoing ? "Votre appel sortant vers :" : "Appel :";
      $("phone-caller").textContent = message.caller;
      phoneState(phone.outgoing ? "votre appel sortant" : "sonne");
      break;
    case "ring-cancelled":
      if (phone.ring === message.ring) { phone.ring = null; phoneState("prêt"); }
      break;
    case "hung-up":
      if (phone.call === message.ring || phone.ring === message.ring) {
        phone.call = null; phone.ring = null; phone.held = false; phoneState("prêt");
      }
      break;
  }
  phoneRender();
}
window.phoneMessage = phoneMessage;

// A new socket (login, reconnection): the server forgot the phone with the old one.
window.phoneSocket = (socket) => {
  phone.socket = socket;
  if (phone.pc) { phoneOff(false); phoneOn(); }
};

$("phone-on").addEventListener("click", phoneOn);
$("phone-off").addEventListener("click", () => phoneOff(true));
// How long after her click she first heard the far end (ms), for measurements
// (`phoneAudioAfterMs()`).
function phoneTimeToAudio() {
  const clicked = performance.now();
  phone.audioAfterMs = null;
  const timer = setInterval(() => {
    const heard = phoneHears();
    const waited = performance.now() - clicked;
    if (heard && heard.db > -50) { phone.audioAfterMs = Math.round(waited); clearInterval(timer); }
    else if (waited > 10000 || phone.call === null) clearInterval(timer);
  }, 5);
}
window.phoneAudioAfterMs = () => phone.audioAfterMs;

$("phone-answer").addEventListener("click", () => {
  if (phone.ring === null) return;
  phone.call = phone.ring; phone.ring = null;
  phoneTimeToAudio();
  phoneSend({ type: "answer", ring: phone.call });
  phoneState("en ligne");
  phoneRender();
});
$("phone-decline").addEventListener("click", () => {
  if (phone.ring === null) return;
  phoneSend({ type: "decline", ring: phone.ring });
  phone.ring = null; phoneState("prêt"); phoneRender();
});
$("phone-hangup").addEventListener("click", () => {
  if (phone.call === null) return;
  phoneSend({ type: "hang-up", ring: phone.call });
  phone.call = null; phone.held = false; phoneState("prêt"); phoneRender();
});
$("phone-mute").addEventListener("click", () => {
  phone.muted = !phone.muted;
  if (phone.mic) phone.mic.getAudioTracks().forEach((t) => { t.enabled = !phone.muted; });
  phoneRender();
});
$("phone-hold").addEventListener("click", () => {
  if (phone.call === null) return;
  phone.held = !phone.held;
  phoneSend({ type: "hold", ring: phone.call, on: phone.held });
  phoneRender();
});
// Keys go to the far end as RFC 4733 telephone-events, which the server relays.
for (const key of $("phone-keypad").querySelectorAll("button")) {
  key.addEventListener("click", () => {
    const sender = phone.pc && phone.pc.getSenders()[0];
    if (phone.call !== null && sender && sender.dtmf) sender.dtmf.insertDTMF(key.textContent, 120, 80);
  });
}
phoneRender();
