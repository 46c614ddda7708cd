// The account forms: register, confirm with the code from the e-mail (or ask for a new one), and
// log in with the password.

import {byId, formValues} from './dom.js';
import {notice, succeeded} from './feedback.js';

/** Wires the forms; `loggedIn(reply, email)` is called with a USER_LOGGED reply. */
export function initAuth(conn, loggedIn) {
  const register = byId('register-form');
  const confirm = byId('confirm-form');
  const login = byId('login-form');

  register.addEventListener('submit', async (event) => {
    event.preventDefault();
    const {email, password} = formValues(register);
    const reply = await conn.request('REGISTER', {userRegData: {email, password}});
    if (!succeeded(reply, 'Registering')) return;
    notice(reply.message);
    byId('confirm-email').value = email;
    byId('login-email').value = email;
    byId('login-password').value = password;
    register.reset();
    byId('confirm-code').focus();
  });

  confirm.addEventListener('submit', async (event) => {
    event.preventDefault();
    const {email, token} = formValues(confirm);
    const reply = await conn.request('CONFIRMATION', {userRegData: {email, token}});
    if (!succeeded(reply, 'Confirming')) return;
    notice(`${reply.message} You can log in now.`);
    confirm.reset();
    byId('login-email').value = email;
    // Just registered here: the password is still in the login form.
    if (byId('login-password').value) login.requestSubmit();
    else byId('login-password').focus();
  });

  byId('resend-code').addEventListener('click', async () => {
    const email = byId('confirm-email').value.trim();
    if (!email) {
      byId('confirm-email').focus();
      return;
    }
    const reply = await conn.request('RESEND_CONFIRMATION', {userRegData: {email}});
    if (succeeded(reply, 'Sending a new code')) notice(reply.message);
  });

  login.addEventListener('submit', async (event) => {
    event.preventDefault();
    const {email, password} = formValues(login);
    const reply = await conn.request('LOGIN', {userLoginData: {email, password}});
    if (!succeeded(reply, 'Logging in')) {
      if (reply.rocketStatus === 'USER_NOT_CONFIRMED') byId('confirm-email').value = email;
      return;
    }
    login.reset();
    loggedIn(reply, email);
  });
}
