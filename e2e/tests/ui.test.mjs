// Browser tests of the server-rendered UI, at phone (375x812, touch) and desktop (1366x900)
// sizes, against the real `baton demo` server. Run with `node --test` (see ../run.sh).

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  VIEWPORTS,
  startServer,
  launchBrowser,
  newPage,
  login,
  switchLang,
  screenshot,
  widths,
  text,
} from '../lib/harness.mjs';

/** What each role's home page must show: the role, its duty line, its unit and its tiles. */
const HOMES = [
  {
    user: 'commander',
    role: 'commander',
    labelZh: '指挥部工作人员',
    labelEn: 'Command office staff',
    dutyZh: '统筹全县',
    unit: '壶关县疫情防控指挥部办公室',
    scope: '140427',
    tiles: ['/admin/units', '/admin/users', '/grids', '/audit', '/policy', '/divisions'],
    noTiles: ['/admin/roles', '/admin/tokens'],
  },
  {
    user: 'checkpoint',
    role: 'checkpoint_staff',
    labelZh: '卡口工作人员',
    labelEn: 'Checkpoint staff',
    dutyZh: '卡口登记货车',
    unit: '龙泉高速出口卡口',
    scope: '仅本单位',
    tiles: ['/admin/units', '/policy', '/divisions'],
    noTiles: ['/admin/users', '/admin/roles', '/admin/tokens', '/grids', '/audit'],
  },
  {
    user: 'longquan',
    role: 'township_staff',
    labelZh: '乡镇工作人员',
    labelEn: 'Township staff',
    dutyZh: '本乡镇的属地责任',
    unit: '龙泉镇人民政府',
    scope: '龙泉镇',
    tiles: ['/admin/units', '/admin/users', '/grids', '/policy', '/divisions'],
    noTiles: ['/admin/roles', '/admin/tokens', '/audit'],
  },
  {
    user: 'admin',
    role: 'admin',
    labelZh: '系统管理员',
    labelEn: 'System administrator',
    dutyZh: '维护单位、用户、角色',
    unit: '壶关县疫情防控指挥部办公室',
    scope: '140427',
    tiles: ['/admin/units', '/admin/users', '/admin/roles', '/admin/tokens', '/audit', '/policy'],
    noTiles: [],
  },
  {
    user: 'lab',
    role: 'lab_staff',
    labelZh: '检测机构人员',
    labelEn: 'Lab staff',
    dutyZh: '接收样本',
    unit: '壶关县人民医院核酸检测实验室',
    scope: '仅本单位',
    tiles: ['/admin/units', '/divisions'],
    noTiles: ['/admin/users', '/audit', '/policy', '/grids'],
  },
];

let server;
let browser;

before(async () => {
  server = await startServer();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

/** Run `fn` with a fresh page at the viewport; fail on page errors, console errors or 5xx. */
async function withPage(vp, fn) {
  const { context, page, problems } = await newPage(browser, vp, server.baseURL);
  try {
    await fn(page);
    assert.deepEqual(problems, [], `browser reported problems on ${page.url()}`);
  } finally {
    await context.close();
  }
}

async function assertNoHorizontalScroll(page, vp, what) {
  const w = await widths(page);
  assert.ok(
    w.scrollWidth <= vp.options.viewport.width + 1,
    `${what} scrolls sideways at ${vp.options.viewport.width} px: scrollWidth ${w.scrollWidth}, innerWidth ${w.innerWidth}`,
  );
}

async function tileHrefs(page) {
  return page.$$eval('#home ~ section .tiles a', (as) => as.map((a) => a.getAttribute('href')));
}

async function unitNames(page) {
  return page.$$eval('table tbody tr td:first-child', (tds) =>
    tds.map((td) => td.innerText.replace(/\s+/g, ' ').trim()),
  );
}

// Every test has its own browser context (cookies, language), so the tests run side by side.
const CONCURRENCY = Number(process.env.E2E_CONCURRENCY || 3);

for (const vp of VIEWPORTS) {
  const size = `${vp.options.viewport.width}x${vp.options.viewport.height}`;
  describe(`${vp.name} (${size})`, { concurrency: CONCURRENCY }, () => {
    test('the login page renders in Chinese with the form', { timeout: 60_000 }, async () => {
      await withPage(vp, async (page) => {
        await page.goto('/');
        assert.match(new URL(page.url()).pathname, /^\/login/, 'signed-out visitors go to the login');
        assert.equal(await page.getAttribute('html', 'lang'), 'zh-CN');
        assert.ok(await page.isVisible('#login-form #username'));
        assert.ok(await page.isVisible('#login-form #password'));
        assert.equal(await text(page, '#lang-switch'), 'English');
        await assertNoHorizontalScroll(page, vp, 'login page');
        await screenshot(page, `${vp.name}-login-zh`);
      });
    });

    test('a wrong password shows an error and stays on the login page', { timeout: 60_000 }, async () => {
      await withPage(vp, async (page) => {
        await page.goto('/login');
        await page.fill('#username', 'commander');
        await page.fill('#password', 'not-the-password');
        await page.click('#login-form button[type="submit"]');
        const banner = page.locator('.error-banner[role="alert"]');
        await banner.waitFor({ state: 'visible' });
        assert.match(await banner.innerText(), /用户名或密码错误/);
        assert.equal(new URL(page.url()).pathname, '/login');
        assert.ok(await page.isVisible('#login-form'));
        assert.equal(await page.inputValue('#username'), 'commander', 'the username is kept');
        assert.equal(await page.inputValue('#password'), '', 'the password is not echoed back');
        assert.equal(await page.locator('#home').count(), 0);
        await assertNoHorizontalScroll(page, vp, 'login page with an error');
        await screenshot(page, `${vp.name}-login-wrong-password`);
        // Still signed out: the home page sends us back to the login.
        await page.goto('/');
        assert.equal(new URL(page.url()).pathname, '/login');
      });
    });

    for (const h of HOMES) {
      test(`${h.user} signs in and lands on the ${h.role} home`, { timeout: 60_000 }, async () => {
        await withPage(vp, async (page) => {
          await login(page, h.user);
          assert.equal(new URL(page.url()).pathname, '/');
          const home = page.locator('#home');
          await home.waitFor();
          assert.equal(await home.getAttribute('data-role'), h.role);
          assert.equal(await text(page, '#home-role'), h.labelZh);
          assert.match(await text(page, '#home-duty'), new RegExp(h.dutyZh), 'the role duty line');
          const facts = await text(page, '#home .facts');
          assert.ok(facts.includes(h.unit), `unit ${h.unit} in "${facts}"`);
          assert.ok(facts.includes(h.scope), `scope ${h.scope} in "${facts}"`);
          const tiles = await tileHrefs(page);
          for (const t of h.tiles) assert.ok(tiles.includes(t), `${h.user} should see tile ${t}; has ${tiles}`);
          for (const t of h.noTiles) assert.ok(!tiles.includes(t), `${h.user} must not see tile ${t}`);
          // The nav offers the same pages (the menu on a phone, the bar on a desktop).
          const navHrefs = await page.$$eval('nav.nav .nav-bar a', (as) => as.map((a) => a.getAttribute('href')));
          for (const t of h.noTiles) assert.ok(!navHrefs.includes(t), `${h.user} must not see nav ${t}`);
          await assertNoHorizontalScroll(page, vp, `${h.user} home`);
          await screenshot(page, `${vp.name}-home-${h.user}-zh`);
        });
      });
    }

    test('the language switch turns the page from Chinese to English and back', { timeout: 60_000 }, async () => {
      await withPage(vp, async (page) => {
        await login(page, 'commander');
        await page.locator('#home').waitFor();
        const unitsNav = 'nav.nav .nav-bar a[href="/admin/units"]';
        assert.equal(await page.getAttribute('html', 'lang'), 'zh-CN');
        assert.equal(await page.locator(unitsNav).textContent(), '单位');
        assert.equal(await text(page, '#home-role'), '指挥部工作人员');
        assert.equal(await text(page, '#lang-switch'), 'English');

        await switchLang(page, 'en');
        assert.equal(new URL(page.url()).pathname, '/', 'the switch comes back to the same page');
        assert.equal(await page.locator(unitsNav).textContent(), 'Units');
        assert.equal(await text(page, '#home-role'), 'Command office staff');
        assert.equal(await text(page, '#lang-switch'), '中文');
        assert.match(await text(page, '#home-duty'), /Run the county/);
        assert.match(await text(page, '#home h1'), /^Welcome/);
        assert.equal(await page.locator('#home').getAttribute('data-role'), 'commander');
        await assertNoHorizontalScroll(page, vp, 'commander home in English');
        await screenshot(page, `${vp.name}-home-commander-en`);

        // The choice sticks to the next page.
        await page.goto('/admin/units');
        assert.equal(await page.getAttribute('html', 'lang'), 'en');
        assert.equal(await text(page, 'main h1'), 'Units');
        await assertNoHorizontalScroll(page, vp, 'units page in English');
        await screenshot(page, `${vp.name}-units-commander-en`, { fullPage: false });

        await switchLang(page, 'zh-CN');
        assert.equal(new URL(page.url()).pathname, '/admin/units');
        assert.equal(await page.locator(unitsNav).textContent(), '单位');
        assert.equal(await text(page, 'main h1'), '单位');
        assert.equal(await text(page, '#lang-switch'), 'English');
      });
    });

    test('the language switch works on the login page too', { timeout: 60_000 }, async () => {
      await withPage(vp, async (page) => {
        await page.goto('/login');
        assert.equal(await text(page, 'main h1'), '登录');
        await switchLang(page, 'en');
        assert.equal(new URL(page.url()).pathname, '/login');
        assert.equal(await text(page, 'main h1'), 'Sign in');
        // Signing in still works after the switch (the login CSRF cookie survives).
        await page.fill('#username', 'leader');
        await page.fill('#password', 'Huguan-2022!');
        await Promise.all([
          page.waitForURL((u) => !u.pathname.startsWith('/login')),
          page.click('#login-form button[type="submit"]'),
        ]);
        assert.equal(await page.locator('#home').getAttribute('data-role'), 'leader');
        assert.equal(await text(page, '#home-role'), 'County leader');
        await screenshot(page, `${vp.name}-home-leader-en`);
      });
    });

    test('commander: /admin/units lists the county\'s units', { timeout: 60_000 }, async () => {
      await withPage(vp, async (page) => {
        await login(page, 'commander');
        if (vp.name === 'phone') {
          // On a phone the nav is a menu: open it and follow the link.
          await page.click('nav.nav .nav-menu summary');
          const link = page.locator('nav.nav .nav-menu a[href="/admin/units"]');
          await link.waitFor({ state: 'visible' });
          await Promise.all([page.waitForURL('**/admin/units'), link.tap()]);
        } else {
          const link = page.locator('nav.nav .nav-bar a[href="/admin/units"]');
          assert.ok(await link.isVisible(), 'the desktop nav bar shows Units');
          await Promise.all([page.waitForURL('**/admin/units'), link.click()]);
        }
        assert.equal(await text(page, 'main h1'), '单位');
        assert.equal(
          await page.locator('nav.nav a[aria-current="page"]').first().getAttribute('href'),
          '/admin/units',
        );
        const names = await unitNames(page);
        assert.ok(names.length > 100, `the demo county has hundreds of units, saw ${names.length}`);
        for (const n of [
          '壶关县疫情防控指挥部办公室',
          '龙泉镇核酸采样队',
          '百尺镇核酸采样队',
          '龙泉高速出口卡口',
          '百尺镇人民政府',
        ]) {
          assert.ok(names.includes(n), `${n} listed for the commander`);
        }
        assert.ok(await page.isVisible('a.button.primary[href="/admin/units/new"]'), 'commander may create units');
        await assertNoHorizontalScroll(page, vp, 'units page');
        await screenshot(page, `${vp.name}-units-commander-zh`, { fullPage: false });

        // The name filter narrows the list.
        await page.fill('form.filters input[name="q"]', '核酸采样队');
        await Promise.all([
          page.waitForURL(/q=/),
          page.click('form.filters button[type="submit"]'),
        ]);
        const filtered = await unitNames(page);
        assert.deepEqual([...filtered].sort(), ['百尺镇核酸采样队', '龙泉镇核酸采样队'].sort());
        await assertNoHorizontalScroll(page, vp, 'filtered units page');
        await screenshot(page, `${vp.name}-units-commander-filtered`);
      });
    });

    test('township (longquan): /admin/units shows 龙泉镇 units, not 百尺镇\'s', { timeout: 60_000 }, async () => {
      await withPage(vp, async (page) => {
        await login(page, 'longquan');
        await page.goto('/admin/units');
        assert.equal(await text(page, 'main h1'), '单位');
        const names = await unitNames(page);
        assert.ok(names.includes('龙泉镇核酸采样队'), '龙泉镇核酸采样队 is in scope');
        assert.ok(names.includes('龙泉镇人民政府'), 'its own township government is listed');
        assert.ok(!names.includes('百尺镇核酸采样队'), '百尺镇核酸采样队 is outside the scope');
        assert.ok(!names.includes('百尺镇人民政府'), '百尺镇人民政府 is outside the scope');
        const body = await page.locator('main').innerText();
        assert.ok(!body.includes('百尺镇核酸采样队'), 'no trace of 百尺镇核酸采样队 on the page');
        const divisions = await page.$$eval('table tbody tr td:nth-child(3)', (tds) =>
          tds.map((td) => td.innerText),
        );
        for (const d of divisions) assert.match(d, /140427100/, `every unit lies in 龙泉镇: ${d}`);
        assert.equal(
          await page.locator('a.button.primary[href="/admin/units/new"]').count(),
          0,
          'township staff may not create units',
        );
        await assertNoHorizontalScroll(page, vp, 'township units page');
        await screenshot(page, `${vp.name}-units-longquan-zh`, { fullPage: false });
      });
    });
  });
}
