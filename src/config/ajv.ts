// The one Ajv instance of the process, with ajv-formats: the config file's schema and every
// stage's options schema are compiled by it, so `format: 'uri'` (or any other format) means the
// same in both, and is enforced, not silently ignored as an unknown keyword would be.
import { Ajv } from 'ajv';
import addFormatsModule from 'ajv-formats';

const addFormats = addFormatsModule as unknown as (ajv: Ajv) => Ajv;

export const ajv = new Ajv({ allErrors: true, useDefaults: true, strict: false, coerceTypes: false });
addFormats(ajv);
