/*! Flywheel tracking script: page views, marked clicks and form submits, sent to /v1/collect.
 * <script async src="https://NODE/t.js" data-key="fwp_..."></script>
 * data-key: the public write key (required); data-api: the node's URL (default: src's origin);
 * data-cookieless: no cookies nor storage. data-fw-click="name" on an element records its
 * clicks; data-fw-form="name" names a form. API: flywheel.track(type, properties).
 */
(() => {
  'use strict';
  const safe = (fn) => function () {
    try {
      return fn.apply(this, arguments);
    } catch (e) {}
  };
  safe(() => {
    const script = document.currentScript;
    const data = script ? script.dataset : {};
    if (!data.key || window.flywheel) return;
    const api = (data.api || new URL(script.src, location.href).origin).replace(/\/+$/, '');
    const endpoint = `${api}/v1/collect?key=${encodeURIComponent(data.key)}`;
    const cookieless = 'cookieless' in data;
    const words = (s) => s.split(' ');
    const TYPES = words('page_view click form_submit lead_created meeting_booked email_sent email_open ' +
      'email_click whatsapp_sent purchase refund feedback affiliate_click ad_impression ad_click');
    const cut = (v, n) => String(v).slice(0, n);
    // o[k] = v unless v is empty (the schema has no empty values).
    const put = (o, k, v) => {
      if (v && (typeof v != 'object' || Object.keys(v).length)) o[k] = v;
    };
    const on = (target, type, fn, capture) => target.addEventListener(type, safe(fn), capture);
    // The page: its URL without the fragment, unless a #/ or #! route.
    const page = () => location.href.split('#')[0] + (/^#[!/]/.test(location.hash) ? location.hash : '');
    const queue = [];
    let timer = 0;
    let session = '';
    let last = page();
    let referrer = document.referrer;

    // A UUID v7 of `t` ms: time-ordered ids keep the events' index growing at its end.
    const uuid = (t = Date.now()) => {
      const b = crypto.getRandomValues(new Uint8Array(16));
      b[6] = (b[6] & 15) | 112;
      b[8] = (b[8] & 63) | 128;
      for (let i = 6; i--; t = Math.floor(t / 256)) b[i] = t % 256;
      const h = Array.from(b, (x) => (x + 256).toString(16).slice(1)).join('');
      return h.replace(/^(.{8})(.{4})(.{4})(.{4})/, '$1-$2-$3-$4-');
    };

    // A first-party id cookie, made if absent, renewed on each event.
    const cookie = (name, maxAge) => {
      const m = document.cookie.match(new RegExp(`(?:^|; )${name}=([^;]*)`));
      const v = m && /^[A-Za-z0-9._:-]{1,128}$/.test(m[1]) ? m[1] : uuid();
      document.cookie = `${name}=${v}; max-age=${maxAge}; path=/; SameSite=Lax` +
        (location.protocol == 'https:' ? '; Secure' : '');
      return v;
    };

    const context = (isPageView) => {
      const c = { url: cut(location.href, 2048) };
      put(c, 'referrer', cut(referrer, 2048));
      put(c, 'title', cut(document.title, 512));
      put(c, 'user_agent', cut(navigator.userAgent, 512));
      const lang = navigator.language;
      if (/^[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8}){0,3}$/.test(lang)) c.locale = lang;
      const { width, height } = screen;
      if (width > 0 && height > 0) c.screen = { width, height };
      if (isPageView) {
        const q = new URLSearchParams(location.search);
        const utm = {};
        const ids = {};
        words('source medium campaign term content').forEach((k) => put(utm, k, cut(q.get('utm_' + k) || '', 256)));
        words('gclid fbclid msclkid ttclid li_fat_id').forEach((k) => put(ids, k, cut(q.get(k) || '', 512)));
        put(c, 'utm', utm);
        put(c, 'click_ids', ids);
        const ref = q.get('ref') || '';
        if (/^[A-Za-z0-9_-]{3,64}$/.test(ref)) c.ref = ref;
      }
      return c;
    };

    const flush = safe(() => {
      clearTimeout(timer);
      timer = 0;
      while (queue.length) {
        const body = JSON.stringify({ events: queue.splice(0, 20) });
        if (!(navigator.sendBeacon && navigator.sendBeacon(endpoint, new Blob([body], { type: 'text/plain' })))) {
          fetch(endpoint, {
            method: 'POST',
            body,
            keepalive: true,
            mode: 'cors',
            credentials: 'omit',
            headers: { 'Content-Type': 'text/plain' },
          }).catch(() => {});
        }
      }
    });

    // Queues an event; `now` sends at once (before a navigation).
    const record = (type, properties, isPageView, now) => {
      const t = Date.now();
      const e = { id: uuid(t), type, source: 'web', occurred_at: new Date(t).toISOString() };
      if (cookieless) {
        e.session_id = session = session || uuid();
      } else {
        e.visitor_id = cookie('_fw_vid', 31536000);
        e.session_id = cookie('_fw_sid', 1800);
      }
      e.context = context(isPageView);
      put(e, 'properties', properties);
      queue.push(e);
      if (now || queue.length >= 20) flush();
      else timer = timer || setTimeout(flush, 20);
      return e;
    };

    const pageView = () => {
      if (record('page_view', 0, 1).context.ref) record('affiliate_click', 0, 1);
    };

    // SPA navigation: a page view if the page changed.
    const navigated = () => {
      const now = page();
      if (now == last) return;
      referrer = last;
      last = now;
      pageView();
    };
    ['pushState', 'replaceState'].forEach((m) => {
      const original = history[m];
      history[m] = function () {
        const result = original.apply(this, arguments);
        safe(navigated)();
        return result;
      };
    });
    on(window, 'popstate', navigated);
    on(window, 'pagehide', flush);
    on(document, 'visibilitychange', () => document.visibilityState == 'hidden' && flush());
    on(window, 'pageshow', (e) => e.persisted && pageView());

    on(document, 'click', (e) => {
      const t = e.target;
      const el = t.closest && t.closest('[data-fw-click]');
      if (!el) return;
      const p = { element: cut(el.dataset.fwClick || el.tagName.toLowerCase() + (el.id ? '#' + el.id : ''), 512) };
      const a = t.closest('a[href]');
      if (a && typeof a.href == 'string') p.href = cut(a.href, 2048);
      record('click', p, 0, p.href);
    }, true);

    on(document, 'submit', (e) => {
      const f = e.target;
      if (f.tagName != 'FORM') return;
      // Not form.id: a field named id would shadow it.
      const p = { form_id: cut(f.dataset.fwForm || f.getAttribute('id') || f.getAttribute('name') || 'form', 256) };
      const email = f.querySelector('input[type=email],input[name=email]:not([type=password])');
      put(p, 'email', email && cut(email.value.trim(), 320));
      record('form_submit', p, 0, 1);
    }, true);

    window.flywheel = {
      track: safe((type, properties) => {
        if (!TYPES.includes(type)) return;
        const p = JSON.parse(JSON.stringify(properties || {}));
        if (typeof p != 'object' || Array.isArray(p)) return;
        // Sent alone, so that the node refusing it loses no other event.
        flush();
        record(type, p, type == 'page_view', 1);
      }),
    };

    if (document.prerendering) on(document, 'prerenderingchange', pageView, { once: true });
    else pageView();
  })();
})();
