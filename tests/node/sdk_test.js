// The official SDKs through egressd: each check prints one line, and the
// process exits non-zero if any failed.  Environment: EGRESSD_PROXY (the
// proxy URL), NODE_EXTRA_CA_CERTS (egressd's CA, so the SDKs trust the
// minted leaves).  Node 20 has no proxy support in fetch: undici's
// ProxyAgent is handed to each SDK through its `fetch` option.
// `node sdk_test.js aliases` runs the checks of a route with model_map
// instead (the mock backend answers with the model it was sent).
'use strict';
const OpenAI = require('openai').default || require('openai');
const Anthropic = require('@anthropic-ai/sdk').default || require('@anthropic-ai/sdk');
const { ProxyAgent, fetch: undiciFetch } = require('undici');

const agent = new ProxyAgent(process.env.EGRESSD_PROXY);
const viaProxy = (url, init) => undiciFetch(url, { ...init, dispatcher: agent });
const results = [];

async function check(name, fn) {
  try {
    await fn();
    results.push(`PASS ${name}`);
  } catch (err) {
    results.push(`FAIL ${name}: ${err && err.stack ? err.stack : err}`);
  }
}

function expect(cond, what) {
  if (!cond) throw new Error(what);
}

async function aliases(openai) {
  const messages = [{ role: 'user', content: 'hi' }];
  await check('aliases listed', async () => {
    const page = await openai.models.list();
    const ids = page.data.map((m) => m.id);
    expect(JSON.stringify(ids) === '["gpt-4o","gpt-4o-mini"]', JSON.stringify(ids));
  });
  await check('alias retrieved', async () => {
    const m = await openai.models.retrieve('gpt-4o-mini');
    expect(m.id === 'gpt-4o-mini' && m.object === 'model', JSON.stringify(m));
  });
  await check('alias rewritten', async () => {
    const r = await openai.chat.completions.create({ model: 'gpt-4o', messages });
    expect(r.model === 'llama-3.1-70b', JSON.stringify(r));
  });
  await check('alias rewritten in a stream', async () => {
    const stream = await openai.chat.completions.create({ model: 'gpt-4o-mini', messages,
                                                          stream: true });
    const models = new Set();
    for await (const chunk of stream) models.add(chunk.model);
    expect(JSON.stringify([...models]) === '["llama-3.1-8b"]', JSON.stringify([...models]));
  });
}

async function main() {
  const openai = new OpenAI({ apiKey: 'sk-client-key', baseURL: 'https://api.openai.com/v1',
                              fetch: viaProxy, maxRetries: 0 });
  const plain = new OpenAI({ apiKey: 'sk-client-key', baseURL: 'http://inference.local/v1',
                             fetch: viaProxy, maxRetries: 0 });
  const claude = new Anthropic({ apiKey: 'sk-ant-client-key', baseURL: 'https://api.anthropic.com',
                                 fetch: viaProxy, maxRetries: 0 });
  const messages = [{ role: 'user', content: 'hi' }];

  if (process.argv[2] === 'aliases') {
    await aliases(openai);
    return finish();
  }
  await check('openai chat', async () => {
    const r = await openai.chat.completions.create({ model: 'gpt-4o', messages });
    expect(r.choices[0].message.content === 'hello from mock', JSON.stringify(r));
  });
  await check('openai chat stream', async () => {
    const stream = await openai.chat.completions.create({ model: 'gpt-4o', messages, stream: true });
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta?.content || '';
    expect(text === 'piece0 piece1 piece2 ', JSON.stringify(text));
  });
  await check('openai over plaintext http', async () => {
    const r = await plain.chat.completions.create({ model: 'gpt-4o', messages });
    expect(r.choices[0].message.content === 'hello from mock', JSON.stringify(r));
  });
  await check('openai embeddings', async () => {
    const r = await openai.embeddings.create({ model: 'text-embedding-3-small', input: 'hi' });
    expect(r.data[0].embedding.length === 2, JSON.stringify(r));
  });
  await check('openai models', async () => {
    const page = await openai.models.list();
    expect(page.data[0].id === 'm1', JSON.stringify(page.data));
  });
  await check('openai error shape', async () => {
    try {
      await openai.chat.completions.create({ model: 'no-such-model', messages });
      throw new Error('no error');
    } catch (err) {
      expect(err.status === 400, `status ${err.status}`);
      expect(/no route/.test(err.message), err.message);
    }
  });
  await check('anthropic messages', async () => {
    const r = await claude.messages.create({ model: 'claude-x', max_tokens: 10, messages });
    expect(r.content[0].text === 'hello from mock', JSON.stringify(r));
  });
  await check('anthropic stream', async () => {
    const stream = await claude.messages.create({ model: 'claude-x', max_tokens: 10, messages,
                                                  stream: true });
    let text = '';
    for await (const ev of stream)
      if (ev.type === 'content_block_delta') text += ev.delta.text;
    expect(text === 'piece0 piece1 piece2 ', JSON.stringify(text));
  });
  await check('anthropic stream helper', async () => {
    const msg = await claude.messages.stream({ model: 'claude-x', max_tokens: 10, messages })
      .finalMessage();
    expect(msg.content[0].text === 'piece0 piece1 piece2 ', JSON.stringify(msg));
    expect(msg.usage.output_tokens === 3, JSON.stringify(msg.usage));
  });
  return finish();
}

async function finish() {
  for (const line of results) console.log(line);
  await agent.close();
  process.exit(results.some((l) => l.startsWith('FAIL')) ? 1 : 0);
}

main().catch((err) => {
  console.log(`FAIL harness: ${err.stack}`);
  process.exit(1);
});
