// Each reason the classifier gives a hit (processors/classify.py, flood.py, window.py), in plain words.

const REASONS: Record<string, string> = {
  "ua:empty": "The request had no User-Agent at all. Every mail client and mail provider sends one, so this was a script.",
  "ua:bare_mozilla": 'The User-Agent was just "Mozilla/5.0" from outside Apple\'s networks: no real mail client sends that.',
  "ua:provider_spoof": "It claimed to be Gmail's or Yahoo's image proxy but came from someone else's network.",
  "ua:headless": "A headless browser (HeadlessChrome, Puppeteer, Playwright, Selenium…): automation, not a reader.",
  "ua:http_library": "An HTTP library or command-line tool (curl, Wget, python-requests…): a script, not a reader.",
  "ua:crawler": "A crawler or spider identified itself in its User-Agent.",
  asn_datacenter_at_delivery:
    "A browser from a cloud data centre within seconds of sending: a security scanner checking the email on delivery.",
  replay_flood: "The same network fetched this pixel or link more than 10 times within a minute: a replay, not a reader.",
  click_burst: "Several links of one message were clicked within 1.5 s: a link scanner following every link.",
  apple_mpp: "Apple Mail Privacy Protection loaded the images in advance on Apple's servers; the reader may never have opened it.",
  apple_mpp_asn: "Apple Mail Privacy Protection prefetch from Apple's network: not proof the reader opened it.",
  gmail_prefetch: "Gmail fetched the images when the email arrived, before anyone opened it.",
};

const PREFIXES: [string, string][] = [
  ["token:", "The pixel or link token did not verify (forged, truncated or altered), so the hit belongs to no message."],
  ["gateway_range:", "A security gateway (e.g. Microsoft 365, Proofpoint, Mimecast) loaded it while scanning the email."],
  ["cloud_", "A security scanner on a cloud platform (AWS, Google Cloud, Azure, …) loaded it right after delivery."],
];

export function explain(reason: string): string {
  const known = REASONS[reason];
  if (known) return known;
  for (const [prefix, words] of PREFIXES) {
    if (reason.startsWith(prefix)) {
      const detail = reason.slice(prefix.length);
      return detail ? `${words} (${detail})` : words;
    }
  }
  return "Filtered by the classifier; see the README's counting rules.";
}
