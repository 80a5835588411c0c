/** `Api.Example.com:8080` → `api.example.com`; `[::1]:80` → `[::1]`; a trailing dot is dropped. */
export function normaliseHost(host: string | undefined): string {
  if (!host) return '';
  let end = host.length;
  if (host.charCodeAt(0) === 0x5b /* [ */) {
    const close = host.indexOf(']');
    end = close === -1 ? end : close + 1;
  } else {
    const colon = host.lastIndexOf(':');
    if (colon !== -1) end = colon;
  }
  if (host.charCodeAt(end - 1) === 0x2e /* . */) end--;
  const name = end === host.length ? host : host.slice(0, end);
  // fast path: already lower case (the common case) avoids an allocation
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c >= 0x41 && c <= 0x5a) return name.toLowerCase();
  }
  return name;
}
