// The dashboard's shell: the session (from GET /session, kept in memory only), the header, and the view of the
// current hash route. Views are small modules; the charts library is loaded separately (charts.tsx).
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { currentSession, signOut, whenSignedOut, type Session } from "./api";
import { loadEcharts, loadWorldMap } from "./charts";
import { prefetch } from "./hooks";
import { href, parse, useRoute } from "./route";
import "./styles.css";
import { CampaignReport, reportPaths } from "./views/CampaignReport";
import { Campaigns } from "./views/Campaigns";
import { MessageView } from "./views/Message";
import { RecipientView } from "./views/Recipient";
import { SignIn } from "./views/SignIn";

function App() {
  const [session, setSession] = useState<Session | null | undefined>(undefined);
  const [problem, setProblem] = useState<string | null>(null);
  const route = useRoute();

  useEffect(() => {
    whenSignedOut(() => setSession(null));
    firstSession.then(setSession, (error: Error) => {
      setProblem(error.message);
      setSession(null);
    });
  }, []);

  useEffect(() => {
    const titles = { campaigns: "Campaigns", campaign: "Campaign", message: "Message", recipient: "Recipient" };
    document.title = session ? `${titles[route.view]} · pixelpipe` : "Sign in · pixelpipe";
  }, [route, session]);

  if (session === undefined) return <p class="loading" role="status">Loading…</p>;
  if (session === null) return <SignIn onSignedIn={setSession} problem={problem} />;

  const leave = async () => {
    await signOut().catch(() => undefined);
    setSession(null);
    location.hash = href.campaigns;
  };

  return (
    <>
      <a class="skip" href="#main">
        Skip to content
      </a>
      <header class="top">
        <a class="brand" href={href.campaigns}>
          pixelpipe
        </a>
        <nav aria-label="Main">
          <a href={href.campaigns} aria-current={route.view === "campaigns" ? "page" : undefined}>
            Campaigns
          </a>
          <a href="/schema">API docs</a>
        </nav>
        <span class="account" data-testid="account">
          {session.account}
        </span>
        <button type="button" class="secondary" onClick={leave}>
          Sign out
        </button>
      </header>
      <main id="main" tabIndex={-1}>
        {route.view === "campaigns" && <Campaigns />}
        {route.view === "campaign" && <CampaignReport key={route.id} id={route.id} />}
        {route.view === "message" && <MessageView key={route.id} id={route.id} />}
        {route.view === "recipient" && <RecipientView key={route.id} id={route.id} />}
      </main>
    </>
  );
}

// GET /session goes first (the browser holds 6 requests per host at once); a report opened directly (a link,
// a reload) then starts the charts library and its own requests alongside it, instead of after it: the report
// is the page that must draw within a second.
const firstSession = currentSession();
const first = parse(location.hash);
if (first.view === "campaign") {
  void loadEcharts();
  void loadWorldMap();
  prefetch([reportPaths(first.id).report]);
} else if (first.view === "campaigns") {
  void loadEcharts();
}

render(<App />, document.getElementById("app")!);
