// Session records at rest: AES-256-GCM with the owning provider's key (derived from its
// cookie_secret), the session id as additional authenticated data so that a sealed record cannot
// be replayed under another id. Shared by the embedded store's journal and the Redis store.
//
// Format: base64(iv[12] | tag[16] | ciphertext of the record's JSON).
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import type { SessionRecord } from './store.js';

const IV_BYTES = 12;
const TAG_BYTES = 16;

/** Encrypts a record with its provider's key; the record's id is authenticated along. */
export function sealRecord(key: Buffer, record: SessionRecord): string {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(Buffer.from(record.id));
  const data = Buffer.concat([cipher.update(JSON.stringify(record), 'utf8'), cipher.final()]);
  return Buffer.concat([iv, cipher.getAuthTag(), data]).toString('base64');
}

/**
 * The record sealed under `id`, or undefined when it names another id. Throws when the value
 * does not decrypt (wrong key — cookie_secret rotated —, tampered or corrupted).
 */
export function unsealRecord(key: Buffer, id: string, sealed: string): SessionRecord | undefined {
  const buf = Buffer.from(sealed, 'base64');
  if (buf.length < IV_BYTES + TAG_BYTES) throw new Error('sealed session record too short');
  const decipher = createDecipheriv('aes-256-gcm', key, buf.subarray(0, IV_BYTES));
  decipher.setAuthTag(buf.subarray(IV_BYTES, IV_BYTES + TAG_BYTES));
  decipher.setAAD(Buffer.from(id));
  const json = Buffer.concat([decipher.update(buf.subarray(IV_BYTES + TAG_BYTES)), decipher.final()]).toString('utf8');
  const record = JSON.parse(json) as SessionRecord;
  return record.id === id ? record : undefined;
}
