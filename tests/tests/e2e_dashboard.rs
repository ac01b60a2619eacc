//! The dashboard in a real headless Chromium (Debian `chromium` through `chromedriver`), against
//! the real path (snmpsim, agent, Mosquitto, collector with a tokens file): sign-in, a new
//! incident appearing on the open page by itself (live update, no reload), an acknowledge click
//! changing its state, a comment on the incident's page, and a read-only token seeing no
//! buttons.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use cnaas_tests::browser::Chromedriver;
use cnaas_tests::rig::{Rig, RigOptions, TOKENS};
use cnaas_tests::wait_until;
use fantoccini::{Client, Locator};

fn token(role: &str) -> &'static str {
    TOKENS.iter().find(|t| t.2 == role).map_or("", |t| t.0)
}

async fn sign_in(browser: &Client, base: &str, token: &str) -> Result<()> {
    browser.goto(&format!("{base}/ui/")).await?;
    // Without a session the dashboard sends the browser to the sign-in form.
    let field = browser
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("input[name=token]"))
        .await
        .context("the sign-in form")?;
    field.send_keys(token).await?;
    browser.find(Locator::Id("sign-in")).await?.click().await?;
    browser
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("table#incidents"))
        .await
        .context("the incident list after sign-in")?;
    Ok(())
}

/// The `data-state` of incident `id`'s row on the open page, or `None` if it is not shown.
async fn row_state(browser: &Client, id: i64) -> Result<Option<String>> {
    match browser
        .find(Locator::Css(&format!("tr#incident-{id}")))
        .await
    {
        Ok(row) => match row.attr("data-state").await {
            Ok(state) => Ok(state),
            // The live update replaced the row meanwhile: look again.
            Err(e) if e.is_stale_element_reference() => Ok(None),
            Err(e) => Err(e.into()),
        },
        Err(e) if e.is_no_such_element() => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Runs `f` again while the live update replaces the elements it holds under it.
async fn settled<T, Fut>(mut f: impl FnMut() -> Fut) -> Result<T>
where
    Fut: std::future::Future<Output = Result<T, fantoccini::error::CmdError>>,
{
    for _ in 0..50 {
        match f().await {
            Err(e) if e.is_stale_element_reference() => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => return Ok(other?),
        }
    }
    bail!("the page kept changing under the test")
}

async fn wait_row_state(browser: &Client, id: i64, state: &str, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        if row_state(browser, id).await?.as_deref() == Some(state) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "incident {id} not shown as {state} within {limit:?}; page:\n{}",
                browser.source().await.unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn the_dashboard_shows_incidents_live_and_acknowledges_them() -> Result<()> {
    let rig = Rig::start(&RigOptions {
        dead_device: false,
        api_tokens: true,
        ..RigOptions::default()
    })?;
    let driver = Chromedriver::start()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let base = rig.api.clone();
    let browser = rt.block_on(async {
        let browser = driver.connect().await?;
        sign_in(&browser, &base, token("ssc")).await?;
        let rows = browser
            .find_all(Locator::Css("table#incidents tbody tr"))
            .await?;
        assert!(rows.is_empty(), "no incident before the fault");
        // The live stream is up before the fault happens.
        browser
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css("#live-status.on"))
            .await
            .context("the live-update stream")?;
        anyhow::Ok(browser)
    })?;

    // The uplink goes down; the page was loaded before and is not reloaded by the test.
    let fault = Instant::now();
    rig.set_oper(49, 2)?;
    let incident = wait_until("the incident in the API", Duration::from_secs(15), || {
        rig.open_port_incident(49)
    })
    .with_context(|| rig.logs())?;
    let id = incident["id"].as_i64().context("incident id")?;
    rt.block_on(wait_row_state(&browser, id, "open", Duration::from_secs(5)))?;
    println!(
        "incident {id} on the open page {:?} after the snmpset",
        fault.elapsed()
    );

    // Acknowledge from the list.
    rt.block_on(async {
        let row_css = format!("tr#incident-{id}");
        let text =
            settled(|| async { browser.find(Locator::Css(&row_css)).await?.text().await }).await?;
        assert!(
            text.contains("a-b12-01"),
            "the row names the device: {text}"
        );
        let ack = format!("{row_css} button.ack");
        settled(|| async { browser.find(Locator::Css(&ack)).await?.click().await }).await?;
        wait_row_state(&browser, id, "acknowledged", Duration::from_secs(10)).await?;
        assert!(
            browser.find_all(Locator::Css(&ack)).await?.is_empty(),
            "an acknowledged incident offers no acknowledge button"
        );
        anyhow::Ok(())
    })?;
    let detail = rig
        .get(&format!("{base}/api/v1/incidents/{id}"))
        .context("incident detail")?;
    assert_eq!(detail["state"], "acknowledged");
    let by_desk = detail["history"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|h| h["action"] == "acknowledged" && h["actor"] == "ssc-desk");
    assert!(by_desk, "the history names the signed-in token: {detail}");

    // The incident's page: state, alarms, history; a comment lands in the history.
    rt.block_on(async {
        let link = format!("tr#incident-{id} a");
        settled(|| async { browser.find(Locator::Css(&link)).await?.click().await }).await?;
        browser
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Id("state"))
            .await?;
        let state =
            settled(|| async { browser.find(Locator::Id("state")).await?.text().await }).await?;
        assert!(state.starts_with("acknowledged"), "{state}");
        let alarms = settled(|| async {
            browser
                .find_all(Locator::Css("table#alarms tbody tr"))
                .await
        })
        .await?;
        assert!(!alarms.is_empty(), "member alarms are listed");
        browser
            .find(Locator::Css("form[action$='/comment'] textarea"))
            .await?
            .send_keys("Fibre tech on site 14:00")
            .await?;
        browser
            .find(Locator::Id("do-comment"))
            .await?
            .click()
            .await?;
        // The click posts the form and loads the page again: until it has loaded, the table
        // is missing or stale, which is "not yet", not a failure.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let history = match browser.find(Locator::Css("table#history")).await {
                Ok(table) => table.text().await.unwrap_or_default(),
                Err(e) if e.is_no_such_element() || e.is_stale_element_reference() => String::new(),
                Err(e) => return Err(e.into()),
            };
            if history.contains("Fibre tech on site 14:00") {
                break;
            }
            if Instant::now() > deadline {
                bail!("the comment is not in the history: {history}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        browser.close().await?;
        anyhow::Ok(())
    })?;

    // A read-only token sees the incident but no buttons.
    rt.block_on(async {
        let browser = driver.connect().await?;
        sign_in(&browser, &base, token("readonly")).await?;
        wait_row_state(&browser, id, "acknowledged", Duration::from_secs(5)).await?;
        assert!(
            browser
                .find_all(Locator::Css("button.ack"))
                .await?
                .is_empty(),
            "read-only: no acknowledge button"
        );
        browser.goto(&format!("{base}/ui/incidents/{id}")).await?;
        browser
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Id("state"))
            .await?;
        assert!(
            browser
                .find_all(Locator::Css("section.actions"))
                .await?
                .is_empty()
        );
        browser.close().await?;
        anyhow::Ok(())
    })?;
    forms_are_guarded(&base, id)?;
    Ok(())
}

/// Without a session a form post goes to sign-in; with a session but another page's form
/// token it is refused; an unknown token cannot sign in. The incident stays as it was.
fn forms_are_guarded(base: &str, id: i64) -> Result<()> {
    let http = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let form = |path: &str, body: &str, cookie: Option<&str>| {
        let mut req = http
            .post(format!("{base}{path}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.to_owned());
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        req.send()
    };
    let resolve = format!("/ui/incidents/{id}/resolve");
    let r = form(&resolve, "csrf=x", None)?;
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(r.headers()["location"], "/ui/login");
    // The sign-in form pairs its post with a cookie (login CSRF): a post without the pair
    // is refused, even with a good token.
    let (login_cookie, nonce) = cnaas_tests::sign_in_form(base)?;
    assert!(login_cookie.ends_with(&nonce), "{login_cookie} / {nonce}");
    let r = form("/ui/login", &format!("token={}", token("ssc")), None)?;
    assert_eq!(r.status().as_u16(), 403, "no form token");
    let r = form(
        "/ui/login",
        &format!("token={}&csrf=forged", token("ssc")),
        Some(&login_cookie),
    )?;
    assert_eq!(r.status().as_u16(), 403, "a forged form token");
    let login = |t: &str| {
        form(
            "/ui/login",
            &format!("token={t}&csrf={nonce}"),
            Some(&login_cookie),
        )
    };
    let r = login("guess")?;
    assert_eq!(r.status().as_u16(), 401);
    let r = login(token("ssc"))?;
    assert_eq!(r.status().as_u16(), 303);
    let cookie = r.headers()["set-cookie"].to_str()?.to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(
        !cookie.contains(token("ssc")),
        "the token itself is not the cookie"
    );
    let session = cookie.split(';').next().unwrap_or_default().to_owned();
    let r = form(&resolve, "csrf=forged", Some(&session))?;
    assert_eq!(r.status().as_u16(), 403);
    let (_, detail) = cnaas_tests::http_call(
        "GET",
        &format!("{base}/api/v1/incidents/{id}"),
        Some(token("ssc")),
        None,
    )?;
    assert_eq!(detail["state"], "acknowledged", "nothing was resolved");
    // Guessing is throttled: after five wrong tokens (one above), even a good one waits.
    for _ in 0..4 {
        assert_eq!(login("guess")?.status().as_u16(), 401);
    }
    assert_eq!(login("guess")?.status().as_u16(), 429);
    assert_eq!(login(token("ssc"))?.status().as_u16(), 429);
    Ok(())
}
