// The web client in a real browser: headless Chromium (Debian's `chromium`, never a downloaded
// build) driven by playwright-core. Started by tests/tests/browser.rs, which runs the stack and
// passes its addresses:
//
//   SWITCHYARD_WEB_A, SWITCHYARD_WEB_B   the page, through two front doors, each in front of one
//                                        gateway (so Ana and Cleo are on one gateway, Ben on the
//                                        other)
//   SWITCHYARD_MAILDEV                   MailDev's HTTP API, for the confirmation codes
//   SWITCHYARD_CHROMIUM                  the browser (default /usr/bin/chromium)
//   SWITCHYARD_SCREENSHOTS               a directory for screenshots (optional)
//
// To stop and start gateway 0 mid-conversation it prints `CONTROL stop-gateway` or
// `CONTROL start-gateway` and waits for a line on standard input once that is done.
// It exits 0 when every step passed; otherwise it prints what failed and exits 1.

import {readFileSync} from 'node:fs';
import {readFile} from 'node:fs/promises';
import {createRequire} from 'node:module';
import {join} from 'node:path';
import {createInterface} from 'node:readline';
import {chromium} from 'playwright-core';

import {STEP_TIMEOUT_MS, fail, guard, registerAndLogIn, waitOnline} from './lib.mjs';
import {landscapePng} from './picture.mjs';

const env = (name) => process.env[name] ?? fail(`${name} is not set (tests/tests/browser.rs sets it)`);
const webA = env('SWITCHYARD_WEB_A');
const webB = env('SWITCHYARD_WEB_B');
const maildev = env('SWITCHYARD_MAILDEV');
const executablePath = process.env.SWITCHYARD_CHROMIUM ?? '/usr/bin/chromium';
const screenshots = process.env.SWITCHYARD_SCREENSHOTS;

const XSS_TEXT = '<img src=x onerror=alert(1)>';
const XSS_NICKNAME = '<script>alert(1)</script>';
const PNG = landscapePng();
// A file that is not a picture, with every byte value in it, so any change on the way (a text
// conversion, a truncation) shows in the comparison.
const ROUTE = Buffer.from(Array.from({length: 150000}, (_, n) => (n * 7919 + (n >>> 8)) & 0xff));

const stdinLines = createInterface({input: process.stdin})[Symbol.asyncIterator]();
async function control(command) {
  process.stdout.write(`CONTROL ${command}\n`);
  const answer = await stdinLines.next();
  if (answer.done) fail(`no answer to CONTROL ${command}`);
}

function step(title) {
  process.stdout.write(`step: ${title}\n`);
}

const problems = [];
let outage = false;
const run = Date.now().toString(36);
const ana = {email: `ana-${run}@example.com`, password: 'correct-horse-battery', nickname: XSS_NICKNAME};
const ben = {email: `ben-${run}@example.com`, password: 'battery-staple-horse', nickname: 'ben'};
const cleo = {email: `cleo-${run}@example.com`, password: 'staple-horse-battery', nickname: 'cleo'};
const group = `Hikers ${run}`;

const browser = await chromium.launch({executablePath, args: ['--no-sandbox']});
try {
  const contextA = await browser.newContext({viewport: {width: 1280, height: 800}});
  const contextB = await browser.newContext({viewport: {width: 1280, height: 800}});
  const contextC = await browser.newContext({viewport: {width: 1280, height: 800}});
  const a = await contextA.newPage();
  const b = await contextB.newPage();
  const c = await contextC.newPage();
  for (const page of [a, b, c]) page.setDefaultTimeout(STEP_TIMEOUT_MS);
  guard(a, 'Ana', problems, () => outage);
  guard(b, 'Ben', problems, () => outage);
  guard(c, 'Cleo', problems, () => outage);

  step('the page is served with a policy that forbids inline scripts');
  const response = await a.goto(webA);
  const policy = response.headers()['content-security-policy'] ?? '';
  if (!policy.includes("script-src 'self'") || policy.includes('unsafe-inline')) {
    fail(`the page's Content-Security-Policy is not strict: ${policy}`);
  }
  await checkAccessibility(a, 'the login page');
  await shot(a, 'web-client-login.png');

  step('two people register with the codes from their e-mails, each through another gateway');
  await registerAndLogIn(a, webA, maildev, ana);
  await registerAndLogIn(b, webB, maildev, ben);

  step('Ben finds Ana by e-mail and asks to be friends; Ana accepts');
  await b.getByRole('tab', {name: /Friends/}).click();
  await b.getByLabel('Find people by nickname or e-mail').fill(ana.email);
  await b.getByRole('button', {name: 'Search'}).first().click();
  await b.locator('#people-results').getByRole('button', {name: /^Add /}).click();
  await a.getByRole('tab', {name: /Friends/}).click();
  await a.locator('#incoming-list').getByRole('button', {name: 'Accept'}).click();
  await a.locator('#friend-list .item', {hasText: 'ben'}).waitFor();
  const anaInBensList = b.locator('#friend-list .item', {hasText: XSS_NICKNAME});
  await anaInBensList.waitFor();
  await anaInBensList.locator('.presence.on').waitFor();

  step('they chat: typing shows, the hostile text arrives as text, read receipts come back');
  await a.locator('#friend-list').getByRole('button', {name: /^Message/}).click();
  await anaInBensList.getByRole('button', {name: /^Message/}).click();
  await b.locator('#composer-text').fill(XSS_TEXT);
  await b.locator('#composer-text').press('Enter');
  const received = a.locator('#message-list .message.theirs .text').last();
  await received.waitFor();
  if ((await received.textContent()) !== XSS_TEXT) fail(`Ana sees ${await received.textContent()}`);
  if (await a.locator('#message-list img').count() > 0) fail('the message became markup');
  await b.locator('#message-list .message.mine .receipt', {hasText: 'Read'}).last().waitFor();
  await b.locator('#composer-text').pressSequentially('are you there?', {delay: 20});
  await a.locator('#typing', {hasText: 'ben is typing'}).waitFor();
  await b.locator('#composer-text').press('Enter');
  await a.locator('#message-list .message.theirs .text', {hasText: 'are you there?'}).waitFor();
  // Their message ends the typing indicator.
  await a.waitForFunction(() => document.getElementById('typing').textContent === '');
  await a.locator('#composer-text').fill('Hi Ben! This is Ana.');
  await a.getByRole('button', {name: 'Send'}).click();
  await b.locator('#message-list .message.theirs .text', {hasText: 'This is Ana'}).waitFor();
  const nickname = await b.locator('#message-list .message.theirs .author').last().textContent();
  if (nickname !== XSS_NICKNAME) fail(`Ben sees Ana's nickname as ${nickname}`);

  step("Ana's gateway restarts mid-conversation; she reconnects and misses nothing");
  outage = true;
  await control('stop-gateway');
  await a.locator('#conn-state[data-state="waiting"], #conn-state[data-state="connecting"]').waitFor();
  await b.locator('#composer-text').fill('Sent while your gateway was away');
  await b.locator('#composer-text').press('Enter');
  await b.locator('#message-list .message.mine .receipt', {hasText: 'Sent'}).last().waitFor();
  await control('start-gateway');
  await waitOnline(a, 40000);
  outage = false;
  await a.locator('#message-list .message.theirs .text', {hasText: 'Sent while your gateway was away'}).waitFor();
  await a.locator('#composer-text').fill('Back again.');
  await a.locator('#composer-text').press('Enter');
  await b.locator('#message-list .message.theirs .text', {hasText: 'Back again.'}).waitFor();

  step('Ben sends Ana a file; she downloads it and has the same bytes');
  await b.locator('#composer-file').setInputFiles({
    name: 'route.bin', mimeType: 'application/octet-stream', buffer: ROUTE,
  });
  await b.getByRole('button', {name: 'Send'}).click();
  const link = a.locator('#message-list .message.theirs a.file', {hasText: 'route.bin'});
  await link.waitFor();
  if (!(await link.textContent()).includes('146.5 KiB')) fail(`the link shows ${await link.textContent()}`);
  const [download] = await Promise.all([a.waitForEvent('download'), link.click()]);
  const failure = await download.failure();
  if (failure) fail(`the download failed: ${failure}`);
  if (download.suggestedFilename() !== 'route.bin') fail(`the download is named ${download.suggestedFilename()}`);
  const downloaded = await readFile(await download.path());
  if (!downloaded.equals(ROUTE)) {
    fail(`the downloaded file differs from the one sent: ${downloaded.length} bytes, not ${ROUTE.length}`);
  }

  step('a long conversation: history loads further back as Ana scrolls up');
  for (let n = 1; n <= 60; n++) {
    await b.locator('#composer-text').fill(`count ${n}`);
    await b.locator('#composer-text').press('Enter');
  }
  await b.locator('#message-list .message.mine', {hasText: 'count 60'}).locator('.receipt', {hasText: /Sent|Read/}).waitFor();
  await b.waitForFunction(() => !document.querySelector('#message-list .receipt')?.closest('ol')
    ?.textContent.includes('Sending'));
  await a.reload();
  await waitOnline(a);
  await a.locator('#conversation-list .conversation', {hasText: 'ben'}).click();
  await a.locator('#message-list .text', {hasText: /^count 60$/}).waitFor();
  if (await a.locator('#message-list .text', {hasText: /^count 1$/}).count() > 0) {
    fail('the first page already holds the whole conversation; paging is not exercised');
  }
  await a.locator('#message-scroll').evaluate((scroller) => {
    scroller.scrollTop = 0;
  });
  await a.locator('#message-list .text', {hasText: /^count 1$/}).waitFor();
  await a.locator('#message-list .text', {hasText: XSS_TEXT}).waitFor();

  step('a reload resumes the session without the password');
  await b.reload();
  await waitOnline(b);
  await b.locator('#conversation-list .conversation', {hasText: XSS_NICKNAME}).waitFor();

  step('Cleo registers; Ana creates a group, lets Cleo in and makes her an admin');
  await registerAndLogIn(c, webA, maildev, cleo);
  await a.getByRole('tab', {name: 'Groups'}).click();
  await a.locator('#group-name').fill(group);
  await a.getByRole('button', {name: 'Create group'}).click();
  await a.locator('#chat-title', {hasText: group}).waitFor();
  await askToJoin(c, group);
  await a.locator('#group-info-toggle').click();
  const panel = a.locator('#group-panel');
  await panel.getByRole('button', {name: 'Approve cleo'}).click();
  await c.locator('#notices p', {hasText: `You joined “${group}”`}).waitFor();
  await panel.getByRole('button', {name: 'Make admin: cleo'}).click();
  await c.locator('#notices p', {hasText: `You became an admin of “${group}”`}).waitFor();

  step('Ben asks to join; Cleo, the second admin, approves him from her admin panel');
  await askToJoin(b, group);
  await openGroup(c, group);
  await c.locator('#group-info-toggle').click();
  const cleoPanel = c.locator('#group-panel');
  await cleoPanel.getByRole('button', {name: 'Approve ben'}).click();
  await b.locator('#notices p', {hasText: `You joined “${group}”`}).waitFor();
  // Ben is a member now: Cleo's panel lists him with what an admin may do.
  await cleoPanel.getByRole('button', {name: 'Make admin: ben'}).waitFor();
  await openGroup(b, group);

  step('Ana sends a picture to the group');
  await a.locator('#composer-file').setInputFiles({name: 'lake.png', mimeType: 'image/png', buffer: PNG});
  await a.locator('#composer-text').fill('The lake this morning');
  await a.getByRole('button', {name: 'Send'}).click();
  const picture = b.locator('#message-list .picture img').last();
  await picture.waitFor();
  await b.waitForFunction(() => {
    const images = document.querySelectorAll('#message-list .picture img');
    const last = images[images.length - 1];
    return last && last.complete && last.naturalWidth > 0;
  });

  step('Ana makes Ben an admin and takes it back');
  await panel.getByRole('button', {name: 'Make admin: ben'}).click();
  await b.locator('#notices p', {hasText: 'You became an admin'}).waitFor();
  await panel.getByRole('button', {name: 'Demote ben'}).click();
  await panel.getByRole('button', {name: 'Make admin: ben'}).waitFor();

  step('no serious accessibility problem; screenshots');
  await checkAccessibility(a, 'the chat with the group panel');
  await shot(a, 'web-client-group-admin.png');
  await a.locator('#group-info-toggle').click();
  await shot(a, 'web-client-desktop.png');
  await b.setViewportSize({width: 390, height: 844});
  await shot(b, 'web-client-phone.png');
  await b.setViewportSize({width: 1280, height: 800});

  step('Ben writes to Cleo, who is in his group but not his friend: a temporary conversation');
  await b.locator('#group-info-toggle').click();
  await b.locator('#group-panel').getByRole('button', {name: 'Message cleo'}).click();
  await b.locator('#chat-title', {hasText: 'cleo'}).waitFor();
  await b.locator('#chat-temporary', {hasText: /^temporary$/}).waitFor();
  await b.locator('#composer-text').fill('Shall we share a car on Saturday?');
  await b.locator('#composer-text').press('Enter');
  await b.locator('#message-list .message.mine .receipt', {hasText: /Sent|Read/}).waitFor();
  await c.getByRole('tab', {name: /Chats/}).click();
  const withBen = c.locator('#conversation-list .conversation').filter({has: c.locator('.title', {hasText: /^ben/})});
  await withBen.locator('.tag', {hasText: 'temporary'}).waitFor();
  await withBen.click();
  await c.locator('#message-list .message.theirs .text', {hasText: 'share a car'}).waitFor();
  await c.locator('#chat-temporary', {hasText: /^temporary$/}).waitFor();
  await c.locator('#composer').waitFor();

  step('Cleo removes Ben from the group: for both of them the conversation is closed');
  await openGroup(c, group);
  await c.locator('#group-info-toggle').click();
  await cleoPanel.getByRole('button', {name: 'Remove ben'}).click();
  await b.locator('#notices p', {hasText: `You were removed from “${group}”`}).waitFor();
  await c.getByRole('tab', {name: /Chats/}).click();
  await withBen.locator('.tag', {hasText: 'closed'}).waitFor();
  await withBen.click();
  for (const [page, other] of [[b, 'cleo'], [c, 'ben']]) {
    await page.locator('#chat-temporary', {hasText: 'temporary, closed'}).waitFor();
    await page.locator('#chat-closed', {hasText: `you and ${other} no longer share a group`}).waitFor();
    await page.locator('#composer').waitFor({state: 'hidden'});
    // What was written stays to read.
    await page.locator('#message-list .text', {hasText: 'share a car'}).waitFor();
  }
  await b.getByRole('tab', {name: /Chats/}).click();
  await b.locator('#conversation-list .conversation').filter({has: b.locator('.title', {hasText: /^cleo/})})
    .locator('.tag', {hasText: 'closed'}).waitFor();
  await checkAccessibility(b, 'a closed temporary conversation');
  await shot(b, 'web-client-closed-conversation.png');

  if (problems.length > 0) fail(problems.join('\n'));
  process.stdout.write('the browser scenario passed\n');
} catch (error) {
  process.stdout.write(`FAILED: ${error.message}\n`);
  for (const page of browser.contexts().flatMap((c) => c.pages())) {
    const shown = await page.locator('#errors, #conn-state, #history-state').allTextContents().catch(() => []);
    process.stdout.write(`  page ${page.url()} shows: ${JSON.stringify(shown)}\n`);
  }
  for (const problem of problems) process.stdout.write(`  also: ${problem}\n`);
  process.exitCode = 1;
} finally {
  await browser.close();
  process.stdin.destroy();
}

/** Finds a group by name and asks to join it. */
async function askToJoin(page, name) {
  await page.getByRole('tab', {name: 'Groups'}).click();
  await page.getByLabel('Find groups by name').fill(name);
  await page.locator('#group-search').getByRole('button', {name: 'Search'}).click();
  await page.locator('#group-results').getByRole('button', {name: `Ask to join ${name}`}).click();
  await page.locator('#group-results .item', {hasText: 'request sent'}).waitFor();
}

/** Opens one of the person's groups from the Groups tab. */
async function openGroup(page, name) {
  await page.getByRole('tab', {name: 'Groups'}).click();
  await page.locator('#group-list').getByRole('button', {name: `Open ${name}`}).click();
  await page.locator('#chat-title', {hasText: name}).waitFor();
}

async function shot(page, name) {
  if (!screenshots) return;
  // Notices come and go; the pictures show the page under them.
  await page.evaluate(() => document.getElementById('notices').replaceChildren());
  await page.screenshot({path: join(screenshots, name)});
}

/** axe-core on the page as it is; serious or critical violations fail the scenario. */
async function checkAccessibility(page, what) {
  const require = createRequire(import.meta.url);
  const source = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
  // Evaluated by the browser's debugging protocol, which the page's policy does not govern; the
  // page itself still runs under it.
  await page.evaluate(source);
  const result = await page.evaluate(() => window.axe.run(document, {resultTypes: ['violations']}));
  const bad = result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  if (bad.length > 0) {
    fail(`accessibility problems on ${what}:\n${bad.map((v) =>
      `  ${v.impact}: ${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(' ')).join(', ')})`).join('\n')}`);
  }
}
