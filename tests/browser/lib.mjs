// Helpers for the browser scenario: reading confirmation codes from MailDev, watching a page for
// dialogs and console errors, and the account steps every person in the scenario takes.

import {setTimeout as sleep} from 'node:timers/promises';

export const STEP_TIMEOUT_MS = 20000;

/** Fails the scenario with a message that says which step broke. */
export function fail(message) {
  throw new Error(message);
}

/**
 * Watches a page: any dialog (alert, confirm, prompt) is a failure, and so is any console error
 * or uncaught exception, except WebSocket connection failures while `expectOutage()` says a
 * gateway is down on purpose.
 */
export function guard(page, who, problems, expectOutage) {
  page.on('dialog', async (dialog) => {
    problems.push(`${who}: a ${dialog.type()} dialog opened: ${dialog.message()}`);
    await dialog.dismiss().catch(() => {});
  });
  page.on('pageerror', (error) => problems.push(`${who}: uncaught error: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() !== 'error') return;
    const text = message.text();
    if (expectOutage() && /WebSocket connection to .* failed|ERR_CONNECTION_REFUSED|502|Bad Gateway/.test(text)) return;
    problems.push(`${who}: console error: ${text}`);
  });
}

/** The confirmation code in the newest mail to `email`, waiting for it to arrive. */
export async function confirmationCode(maildev, email) {
  const deadline = Date.now() + STEP_TIMEOUT_MS;
  while (Date.now() < deadline) {
    const response = await fetch(`${maildev}/api/email`);
    if (response.ok) {
      const mails = await response.json();
      const mine = mails.filter((mail) => (mail.to ?? []).some((to) => to.address === email));
      const text = mine.at(-1)?.text ?? '';
      const line = text.split('\n').find((l) => l.trim().startsWith('Your confirmation code:'));
      if (line) return line.split(':')[1].trim();
    }
    await sleep(250);
  }
  return fail(`no confirmation mail reached ${email} within ${STEP_TIMEOUT_MS} ms`);
}

/** Waits until the page says it is online (logged in on an open connection). */
export async function waitOnline(page, timeout = STEP_TIMEOUT_MS) {
  await page.locator('#conn-state[data-state="online"]').waitFor({timeout});
}

/** Registers through the page, enters the code from the mail, is logged in, sets a nickname. */
export async function registerAndLogIn(page, url, maildev, {email, password, nickname}) {
  await page.goto(url);
  await page.locator('#register-email').fill(email);
  await page.locator('#register-password').fill(password);
  await page.getByRole('button', {name: 'Register'}).click();
  await page.locator('#notices p', {hasText: 'Registered'}).waitFor({timeout: STEP_TIMEOUT_MS});
  const code = await confirmationCode(maildev, email);
  await page.getByLabel('Code').fill(code);
  await page.getByRole('button', {name: 'Confirm'}).click();
  await waitOnline(page);
  await page.getByRole('tab', {name: 'Profile'}).click();
  await page.locator('#profile-nickname').fill(nickname);
  await page.getByRole('button', {name: 'Save'}).click();
  await page.locator('#whoami', {hasText: nickname}).waitFor({timeout: STEP_TIMEOUT_MS});
}
