// access_token_validity: a number of seconds, or authentik's "hours=1;minutes=30" form.
const UNIT_SECONDS: Record<string, number> = { weeks: 604800, days: 86400, hours: 3600, minutes: 60, seconds: 1 };

export function parseDuration(value: number | string): number {
  if (typeof value === 'number') return value;
  let total = 0;
  for (const part of value.split(';')) {
    const trimmed = part.trim();
    if (!trimmed) continue;
    const m = /^(weeks|days|hours|minutes|seconds)=(\d+)$/.exec(trimmed);
    if (!m) throw new Error(`"${trimmed}" is not of the form unit=number`);
    total += Number(m[2]) * UNIT_SECONDS[m[1]!]!;
  }
  if (total < 1) throw new Error('the session lifetime must be at least 1 second');
  return total;
}
