// Checks a request's inclusion proof in the browser, with WebCrypto only:
//  * the checkpoint is a C2SP signed note: its Ed25519 signature by the log's verifier key
//    (`<name>+<hex key id>+<base64(0x01 || 32-byte key)>`, key id = SHA-256(name || 0x0A ||
//    0x01 || key)[:4]) must verify over the note text, and its text is exactly
//    origin / tree size / base64 root hash, the origin being the key's name;
//  * each of the request's events is a leaf: SHA-256(0x00 || leaf bytes) must equal its leaf
//    hash, and its RFC 9162 inclusion proof (§2.1.3.2) must lead to the checkpoint's root.
// The answer lists every check; nothing here trusts a "verified" flag from the server.

const encoder = new TextEncoder();
const SIGNATURE_PREFIX = "\u2014 "; // EM DASH, space
const ALGORITHM_ED25519 = 0x01;
const PROOF_HASHES_MAX = 64; // a tree of 2^64 leaves needs no more siblings than this
const SIGNATURES_MAX = 100;

export class ProofFailure extends Error {}

function bytesFromBase64(text) {
  if (typeof text !== "string" || !/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 !== 0) {
    throw new ProofFailure("not base64");
  }
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let index = 0; index < binary.length; index += 1) bytes[index] = binary.charCodeAt(index);
  return bytes;
}

function bytesFromHex(text) {
  if (typeof text !== "string" || !/^([0-9a-f]{2})*$/.test(text)) throw new ProofFailure("not lower-case hex");
  const bytes = new Uint8Array(text.length / 2);
  for (let index = 0; index < bytes.length; index += 1) bytes[index] = parseInt(text.slice(2 * index, 2 * index + 2), 16);
  return bytes;
}

export function hex(bytes) {
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

function concat(...parts) {
  const total = parts.reduce((sum, part) => sum + part.length, 0);
  const joined = new Uint8Array(total);
  let offset = 0;
  for (const part of parts) {
    joined.set(part, offset);
    offset += part.length;
  }
  return joined;
}

function equal(a, b) {
  if (a.length !== b.length) return false;
  let difference = 0;
  for (let index = 0; index < a.length; index += 1) difference |= a[index] ^ b[index];
  return difference === 0;
}

async function sha256(bytes) {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
}

export async function leafHash(leaf) {
  return sha256(concat(new Uint8Array([0x00]), leaf));
}

async function nodeHash(left, right) {
  return sha256(concat(new Uint8Array([0x01]), left, right));
}

// RFC 9162 §2.1.3.2: verify an inclusion proof of leaf `index` in a tree of `size` leaves.
export async function verifyInclusion(index, size, hashOfLeaf, proof, root) {
  if (!Number.isSafeInteger(index) || !Number.isSafeInteger(size) || index < 0 || index >= size) return false;
  if (proof.length > PROOF_HASHES_MAX) return false;
  let fn = index;
  let sn = size - 1;
  let running = hashOfLeaf;
  for (const sibling of proof) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      running = await nodeHash(sibling, running);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      running = await nodeHash(running, sibling);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 && equal(running, root);
}

export async function parseVerifierKey(vkey) {
  // Split at the first two '+' only: the base64 key may itself contain '+'.
  const text = String(vkey || "").trim();
  const first = text.indexOf("+");
  const second = first < 0 ? -1 : text.indexOf("+", first + 1);
  if (second < 0) throw new ProofFailure("a verifier key is <name>+<hex key id>+<base64 key>");
  const [name, hexId, encoded] = [text.slice(0, first), text.slice(first + 1, second), text.slice(second + 1)];
  if (!/^[^\s+]+$/.test(name)) throw new ProofFailure("the verifier key's name is invalid");
  if (!/^[0-9a-f]{8}$/.test(hexId)) throw new ProofFailure("the verifier key's id is not 8 hex digits");
  const raw = bytesFromBase64(encoded);
  if (raw.length !== 33 || raw[0] !== ALGORITHM_ED25519) throw new ProofFailure("only Ed25519 verifier keys are supported");
  const publicKey = raw.slice(1);
  const digest = await sha256(concat(encoder.encode(name), new Uint8Array([0x0a, ALGORITHM_ED25519]), publicKey));
  if (hex(digest.slice(0, 4)) !== hexId) throw new ProofFailure("the verifier key's id does not match its name and key");
  return { name, keyId: hexId, publicKey };
}

async function ed25519Verify(publicKey, signature, message) {
  let key;
  try {
    key = await crypto.subtle.importKey("raw", publicKey, { name: "Ed25519" }, false, ["verify"]);
  } catch (error) {
    throw new ProofFailure(`this browser cannot verify Ed25519 signatures (${error.name})`);
  }
  return crypto.subtle.verify({ name: "Ed25519" }, key, signature, message);
}

// The note's text if a signature by `verifier` verifies (others are ignored, as C2SP says).
export async function openNote(note, verifier) {
  const cut = note.lastIndexOf("\n\n");
  if (cut < 0 || !note.endsWith("\n")) throw new ProofFailure("the checkpoint is not a signed note");
  const text = note.slice(0, cut + 1);
  const lines = note.slice(cut + 2, -1).split("\n");
  if (lines.length > SIGNATURES_MAX) throw new ProofFailure("too many signatures on the checkpoint");
  let verified = 0;
  for (const line of lines) {
    if (!line.startsWith(SIGNATURE_PREFIX)) throw new ProofFailure("a signature line must start with an em dash");
    const rest = line.slice(SIGNATURE_PREFIX.length);
    const space = rest.indexOf(" ");
    if (space < 0) throw new ProofFailure("a signature line is '— <name> <base64>'");
    const name = rest.slice(0, space);
    const blob = bytesFromBase64(rest.slice(space + 1));
    if (blob.length < 5) throw new ProofFailure("a signature is shorter than its key id");
    if (name !== verifier.name || hex(blob.slice(0, 4)) !== verifier.keyId) continue;
    if (!(await ed25519Verify(verifier.publicKey, blob.slice(4), encoder.encode(text)))) {
      throw new ProofFailure(`the checkpoint signature of ${name} does not verify`);
    }
    verified += 1;
  }
  if (!verified) throw new ProofFailure("the checkpoint carries no signature by the verifier key");
  return text;
}

function parseCheckpointText(text) {
  const lines = text.split("\n");
  if (lines.length < 4 || lines[lines.length - 1] !== "" || !lines[0] || !lines[1] || !lines[2]) {
    throw new ProofFailure("a checkpoint is origin, size and root hash lines");
  }
  if (!/^(0|[1-9][0-9]{0,15})$/.test(lines[1])) throw new ProofFailure("the checkpoint's size is not a number");
  const root = bytesFromBase64(lines[2]);
  if (root.length !== 32) throw new ProofFailure("the checkpoint's root is not a SHA-256 hash");
  return { origin: lines[0], size: Number(lines[1]), root };
}

// proof: the body of GET /v1/data/audit/{id}/proof. trustedKey: a verifier key the user
// pinned (else the one the checkpoint names). Returns {status, checks, covered, total, key}:
// status "verified" (every event under a verified checkpoint), "pending" (all checked events
// verified, some not yet under a checkpoint) or "failed" (with `reason`).
export async function verifyRequestProof(proof, trustedKey = "") {
  const checks = [];
  const result = { status: "failed", checks, covered: 0, total: 0, key: null, reason: null };
  try {
    const events = Array.isArray(proof && proof.events) ? proof.events : [];
    result.total = events.length;
    if (!events.length) throw new ProofFailure("the log holds no event of this request");
    const checkpoint = proof.checkpoint;
    if (!checkpoint) {
      result.status = "pending";
      result.reason = "no signed checkpoint yet: the log signs one every N events or T seconds";
      return result;
    }
    const verifier = await parseVerifierKey(trustedKey || checkpoint.public_key);
    result.key = `${verifier.name}+${verifier.keyId}`;
    const text = await openNote(String(checkpoint.note || ""), verifier);
    checks.push({ check: "checkpoint signature (Ed25519)", ok: true, detail: result.key });
    const signed = parseCheckpointText(text);
    if (signed.origin !== verifier.name) throw new ProofFailure(`the checkpoint's origin ${signed.origin} is not the key's name`);
    if (signed.size !== checkpoint.size || hex(signed.root) !== checkpoint.root_hash) {
      throw new ProofFailure("the signed checkpoint text differs from the size and root the API reported");
    }
    checks.push({ check: "signed size and root", ok: true, detail: `size ${signed.size}, root ${hex(signed.root).slice(0, 16)}…` });
    for (const event of events) {
      const kind = event.topic ? String(event.topic).split(":").pop() : `event ${String(event.aggregate_id || "?").slice(0, 8)}`;
      const label = `${kind} v${event.version} (leaf ${event.leaf_index})`;
      if (!event.covered) {
        checks.push({ check: label, ok: null, detail: "after the latest checkpoint: proved by the next one" });
        continue;
      }
      if (typeof event.leaf !== "string") throw new ProofFailure(`${label}: the event's leaf bytes are missing`);
      const computed = await leafHash(bytesFromBase64(event.leaf));
      if (hex(computed) !== event.leaf_hash) throw new ProofFailure(`${label}: SHA-256(0x00 || leaf) is not the leaf hash`);
      const siblings = (event.inclusion_proof || []).map(bytesFromHex);
      if (!(await verifyInclusion(event.leaf_index, signed.size, computed, siblings, signed.root))) {
        throw new ProofFailure(`${label}: the inclusion proof does not lead to the signed root`);
      }
      result.covered += 1;
      checks.push({ check: label, ok: true, detail: `${siblings.length} sibling hashes to the signed root` });
    }
    result.status = result.covered === result.total ? "verified" : "pending";
    if (result.status === "pending") result.reason = `${result.total - result.covered} of ${result.total} events await the next checkpoint`;
  } catch (error) {
    result.status = "failed";
    result.reason = error instanceof ProofFailure ? error.message : `verification failed: ${error.message || error}`;
    checks.push({ check: "failed", ok: false, detail: result.reason });
  }
  return result;
}
