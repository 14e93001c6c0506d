/**
 * Device platform from the User-Agent. The User-Agent is the client's word:
 * a platform condition is for steering well-behaved clients (e.g. require MFA
 * on mobile), never a security boundary on its own; document it as such.
 */
export type DevicePlatform = 'windows' | 'macos' | 'linux' | 'ios' | 'android' | 'other';

export function platformOf(userAgent: string | undefined): DevicePlatform {
  if (!userAgent) return 'other';
  const ua = userAgent;
  // Order matters: Android UAs say Linux, iOS UAs say "like Mac OS X", Windows Phone says Android.
  if (/Windows Phone/i.test(ua)) return 'other';
  if (/Android/i.test(ua)) return 'android';
  if (/iPhone|iPad|iPod/i.test(ua)) return 'ios';
  if (/Windows NT|Win64|Win32|Windows/i.test(ua)) return 'windows';
  if (/Macintosh|Mac OS X/i.test(ua)) return 'macos';
  if (/CrOS|X11|Linux/i.test(ua)) return 'linux';
  return 'other';
}
