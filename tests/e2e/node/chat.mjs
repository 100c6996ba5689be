// Drives the gateway with the official openai Node SDK and prints what it saw as JSON.
// Env: LEDGERGATE_URL (gateway root), LEDGERGATE_KEY (lg_… key), MODEL.
import OpenAI from "openai";

const client = new OpenAI({
  baseURL: `${process.env.LEDGERGATE_URL}/v1`,
  apiKey: process.env.LEDGERGATE_KEY,
  defaultHeaders: { "X-User-Id": "node-user" },
  maxRetries: 0,
  timeout: 20000,
});
const model = process.env.MODEL;
const messages = [{ role: "user", content: "Hello from Node" }];
const result = {};

const completion = await client.chat.completions.create({ model, messages });
result.reply = completion.choices[0].message.content;
result.replyUsage = completion.usage;

const stream = await client.chat.completions.create({
  model,
  messages,
  stream: true,
  stream_options: { include_usage: true },
});
let text = "";
for await (const chunk of stream) {
  if (chunk.choices.length) text += chunk.choices[0].delta.content ?? "";
  if (chunk.usage) result.streamUsage = chunk.usage;
}
result.streamText = text;

try {
  await client.chat.completions.create({ model, messages });
} catch (error) {
  result.error = { status: error.status, code: error.code, type: error.type };
}

const embedding = await client.embeddings.create({ model: "text-embedding-3-small", input: "hi" });
result.embeddingLength = embedding.data[0].embedding.length;

console.log(JSON.stringify(result));
