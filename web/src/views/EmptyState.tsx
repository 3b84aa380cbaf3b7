// What a new account sees: how to register a first message and open its pixel.
export function EmptyState() {
  const origin = location.origin;
  const register = `curl -s -X POST ${origin}/v1/messages \\
  -H "Authorization: Bearer $KEY" -H 'content-type: application/json' \\
  -d '{"campaign_id": "welcome", "recipient": "ada@example.com", "links": ["https://example.com/"]}'`;
  const open = `curl -s -o /dev/null -A 'Mozilla/5.0 (Macintosh) AppleWebKit/605.1.15 (KHTML, like Gecko)' "$PIXEL_URL"`;
  return (
    <section class="empty" aria-labelledby="empty-title" data-testid="empty-state">
      <h1 id="empty-title">No campaigns yet</h1>
      <p>pixelpipe counts the opens and clicks of the emails you register. To see your first numbers here:</p>
      <ol>
        <li>
          <p>Register a sent email with your API key (<code>$KEY</code>):</p>
          <pre>
            <code>{register}</code>
          </pre>
        </li>
        <li>
          <p>
            Put the answer's <code>pixel_url</code> in the email's HTML (or use <code>POST /v1/instrument</code>, which does it and
            tracks every link). Or open the pixel yourself, as a mail client would:
          </p>
          <pre>
            <code>{open}</code>
          </pre>
        </li>
        <li>
          <p>
            Come back here: the campaign <code>welcome</code> appears with its open. The <a href="/schema">API docs</a> list every
            endpoint.
          </p>
        </li>
      </ol>
    </section>
  );
}
